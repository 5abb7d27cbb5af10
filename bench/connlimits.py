"""Connection-level limits, measured from outside against ``speko-bridge serve`` (issue 24,
finding 5): what three unfinished huge request headers cost in RSS, how long a slowloris
connection is kept, and what a WebSocket upgrade with 2,000 subprotocols is answered.

    python bench/connlimits.py [--src DIR]     # prints one JSON object

(``--src``: another source tree to run, e.g. an older commit unpacked, for a before/after.)

The server is the real CLI in a subprocess (dev mode, data in a temp dir), so it runs the
uvicorn configuration production runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HUGE_HEADER_BYTES = 100 * 1024 * 1024
CHUNK = 64 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def wait_up(port: int) -> None:
    for _ in range(200):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError("server did not start")


async def read_answer(reader: asyncio.StreamReader, timeout: float) -> str:
    """The status line the server answered, 'closed' if it closed without one, 'silent'."""
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
    except TimeoutError:
        return "silent"
    except ConnectionError:
        return "closed"
    return line.decode(errors="replace").strip() or "closed"


async def huge_headers(port: int, pid: int) -> dict:
    before = rss_kib(pid)
    answers = []

    async def one() -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        try:
            while sent < HUGE_HEADER_BYTES:
                writer.write(b"a" * CHUNK)
                await asyncio.wait_for(writer.drain(), 5)
                sent += CHUNK
        except (ConnectionError, TimeoutError):
            pass
        answer = await read_answer(reader, 2)
        peak = rss_kib(pid)
        writer.close()
        return f"{answer} after {sent // 1024} KiB (rss +{(peak - before) // 1024} MiB)"

    answers = await asyncio.gather(one(), one(), one())
    return {"rss_growth_mib": round((rss_kib(pid) - before) / 1024, 1), "answers": answers}


async def slowloris(port: int, limit: float = 30.0) -> dict:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    answer = "open"
    while time.monotonic() - start < limit:
        try:
            writer.write(b"X-a: b\r\n")
            await writer.drain()
        except ConnectionError:
            answer = "closed"
            break
        try:
            data = await asyncio.wait_for(reader.read(4096), 1.0)
        except TimeoutError:
            continue
        except ConnectionError:
            answer = "closed"
            break
        answer = (data.split(b"\r\n", 1)[0].decode(errors="replace") or "closed")
        break
    writer.close()
    return {"answer": answer, "after_s": round(time.monotonic() - start, 1), "gave_up_at_s": limit}


async def many_subprotocols(port: int, count: int = 2000, width: int = 8) -> dict:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    protos = ", ".join(f"p{i:0{width - 1}d}" for i in range(count))
    writer.write(
        b"GET /v1/realtime HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: " + protos.encode() + b"\r\n\r\n"
    )
    await writer.drain()
    start = time.monotonic()
    answer = await read_answer(reader, 5)
    writer.close()
    return {"header_bytes": len(protos), "answer": answer, "after_s": round(time.monotonic() - start, 2)}


async def main(src: Path) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SPEKO_DEV": "1", "SPEKO_DATA_DIR": tmp, "PYTHONPATH": str(src)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "speko_bridge", "serve", "--port", str(port), "--log-level", "warning"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            await wait_up(port)
            return {
                "huge_headers": await huge_headers(port, proc.pid),
                "slowloris": await slowloris(port),
                "subprotocols_2000": await many_subprotocols(port),
                "subprotocols_2000_short": await many_subprotocols(port, width=2),
            }
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", type=Path, default=ROOT)
    print(json.dumps(asyncio.run(main(parser.parse_args().src.resolve())), indent=1))
