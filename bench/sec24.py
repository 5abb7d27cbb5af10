"""Issue 24's findings outside the live session (8, 9, 10), measured from outside against
``speko-bridge serve`` in a subprocess (dev mode, keys generated in a temp dir):

- deep JSON: the status of a mint body nested 30,000 levels (inside the 64 KiB limit);
- dev mint: the status for DNS-rebinding and cross-origin Host/Origin pairs, no Origin,
  and the page's own request;
- mint flood: 3,000 mints on one key, 32 at a time: how many were minted, how many 429,
  mints/s accepted, and how much the SQLite file grew;
- file modes of the data directory, the generated keys and the database;
- whether a token put in a query string shows up in the server's log.

    python bench/sec24.py [--src DIR]     # DIR: the source tree to run (default: this one)

``--src`` runs another checkout (e.g. ``git archive <commit>`` unpacked) for a before/after.
(Connection-level limits, finding 5: ``bench/connlimits.py``.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
BODY = {"provider": "openai", "model": "gpt-realtime"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def db_bytes(data: Path) -> int:
    return sum(p.stat().st_size for p in data.glob("speko.db*"))


async def measure(base: str, port: int, data: Path, log_path: Path) -> dict:
    key = (data / "dev_api_key").read_text().strip()
    auth = {"Authorization": f"Bearer {key}"}
    out: dict = {}
    # a fresh connection per request: a 500 may leave a keep-alive connection closed
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        async with http.post(base + "/v1/sessions", json=BODY, headers=auth) as r:
            token = (await r.json())["token"]
        async with http.get(f"{base}/healthz?token={token}") as r:
            await r.read()
        deep = (b'{"provider":"openai","model":"gpt-realtime","metadata":{"a":'
                + b"[" * 30_000 + b"]" * 30_000 + b"}}")
        async with http.post(base + "/v1/sessions", data=deep,
                             headers={**auth, "Content-Type": "application/json"}) as r:
            out["deep_json_30000_levels"] = r.status

        pairs = {
            "rebinding (Host evil.example + matching Origin)":
                {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"},
            "cross-origin (Host 127.0.0.1, Origin evil.example)":
                {"Host": f"127.0.0.1:{port}", "Origin": "http://evil.example"},
            "no Origin": {"Host": f"127.0.0.1:{port}"},
            "the page itself": {"Host": f"127.0.0.1:{port}", "Origin": f"http://127.0.0.1:{port}"},
        }
        out["dev_mint"] = {}
        for name, headers in pairs.items():
            async with http.post(base + "/dev/sessions", json=BODY, headers=headers) as r:
                out["dev_mint"][name] = r.status

        before = db_bytes(data)
        statuses: list[int] = []
        gate = asyncio.Semaphore(32)

        async def mint() -> None:
            async with gate, http.post(base + "/v1/sessions", json=BODY, headers=auth) as r:
                statuses.append(r.status)
                await r.read()

        start = time.monotonic()
        await asyncio.gather(*(mint() for _ in range(3000)))
        elapsed = time.monotonic() - start
        out["mint_flood_3000"] = {
            "minted": statuses.count(201), "429": statuses.count(429), "seconds": round(elapsed, 1),
            "minted_per_s": round(statuses.count(201) / elapsed), "db_growth_kib": (db_bytes(data) - before) // 1024,
        }

    out["modes"] = {
        p.name: oct(stat.S_IMODE(p.stat().st_mode))
        for p in (data, data / "dev_api_key", data / "signing_key", data / "speko.db") if p.exists()
    }
    await asyncio.sleep(0.3)
    out["token_in_log"] = token in log_path.read_text()
    return out


async def main(src: Path) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        log_path = Path(tmp) / "server.log"
        env = {**os.environ, "SPEKO_DEV": "1", "SPEKO_DATA_DIR": str(data), "PYTHONPATH": str(src),
               "SPEKO_LOG_FORMAT": "json"}
        old_umask = os.umask(0o022)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "speko_bridge", "serve", "--port", str(port), "--log-level", "info"],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp,
            )
        os.umask(old_umask)
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(300):
                    try:
                        async with http.get(base + "/readyz") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.05)
            return await measure(base, port, data, log_path)
        finally:
            proc.terminate()
            proc.wait(15)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", type=Path, default=ROOT)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.src.resolve())), indent=1))
