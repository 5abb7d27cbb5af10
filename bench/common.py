"""What every benchmark shares: pinned server processes, /proc readings, percentiles, results.

Layout of a run on this 2-core machine: the process under test (bridge, floor relay or bare
endpoint) is pinned to core 0 with ``taskset``; the load generator (this process) and the
echo upstream are pinned to core 1. With fewer than two cores nothing is pinned and the
figures say so.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
CORES = os.cpu_count() or 1
SERVER_CORE = 0
LOAD_CORE = 1 if CORES >= 2 else 0
PINNED = CORES >= 2
API_KEY = "sk_bench_0123456789abcdef"
SIGNING_KEY = "b" * 40
SIM_KEY = "sk-sim"
_TICK = os.sysconf("SC_CLK_TCK")


def quiet_gc() -> None:
    """Keep the harness's own garbage collector out of what it measures: the startup heap
    frozen and no full collections (young cycles are still collected). A full collection of
    the load generator or the echo upstream stops its loop for 17-43 ms (measured with
    ``gc.callbacks`` during bench/overload.py's offer), so every frame in flight then reads
    that much later, whichever server carried it. For the harness processes only: the bridge
    and the floor relay run as they would in production."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(700, 10, 1 << 30)


def pin_self() -> None:
    """Pin the load generator (this process) to its core; raise the fd limit for 1,000s of
    sockets; keep its garbage collector's pauses out of its timings (:func:`quiet_gc`)."""
    quiet_gc()
    if PINNED:
        os.sched_setaffinity(0, {LOAD_CORE})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * (len(ordered) - 1)))))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class CpuMeter:
    """CPU share of one process over a window, in % of one core."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start()

    def start(self) -> None:
        self._cpu, self._wall = cpu_seconds(self.pid), time.monotonic()

    def percent(self) -> float:
        return 100 * (cpu_seconds(self.pid) - self._cpu) / max(1e-9, time.monotonic() - self._wall)


@dataclass
class Server:
    """A child process serving HTTP/WebSocket on ``port``."""

    proc: asyncio.subprocess.Process
    port: int
    name: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def spawn(name: str, args: list[str], *, core: int = SERVER_CORE, env: dict | None = None,
                ready_path: str = "/healthz", port: int | None = None, cwd: Path = ROOT) -> Server:
    """Start ``python args...`` pinned to ``core`` and wait until GET ``ready_path`` answers 200
    (``cwd``: the checkout whose ``speko_bridge`` a ``-m speko_bridge`` runs)."""
    port = port or free_port()
    cmd = [sys.executable, *[a.replace("{port}", str(port)) for a in args]]
    if PINNED and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(core), *cmd]
    full_env = {**os.environ, **(env or {})}
    full_env.pop("SPEKO_DEV", None)
    proc = await asyncio.create_subprocess_exec(
        *cmd, env=full_env, cwd=str(cwd), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    server = Server(proc, port, name)
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                err = (await proc.stderr.read()).decode(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{err}")
            try:
                async with http.get(server.base + ready_path) as r:
                    if r.status == 200:
                        # stderr is not read from here on; keep the pipe from filling up
                        asyncio.get_running_loop().create_task(_drain(proc.stderr))
                        return server
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    await server.stop()
    raise RuntimeError(f"{name} did not become ready on port {port}")


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


def bridge_env(data_dir: str, upstream_url: str, **extra: str) -> dict:
    return {"SPEKO_API_KEYS": API_KEY, "SPEKO_SIGNING_KEY": SIGNING_KEY, "SPEKO_DATA_DIR": data_dir,
            "SPEKO_OPENAI_URL": upstream_url, "OPENAI_API_KEY": SIM_KEY,
            "SPEKO_MAX_SESSIONS": "100000",
            # unlimited mints: the benches measure the bridge, not the default per-key limiter
            "SPEKO_MINT_RATE_PER_MINUTE": "0",
            # nor the overload rule, which would refuse what a bench drives past one core
            # (mints back to back, 200 sessions); bench/overload.py turns it on
            "SPEKO_OVERLOAD_LAG_MS": "0", "SPEKO_OVERLOAD_CPU_PERCENT": "0", **extra}


def _without_unset(env: dict) -> dict:
    """``env`` without the settings given as None (left to the bridge's defaults)."""
    return {k: v for k, v in env.items() if v is not None}


async def start_bridge(data_dir: str, upstream_url: str, *, src: Path = ROOT, name: str = "bridge",
                       env: dict | None = None) -> Server:
    """``env``: settings on top of :func:`bridge_env`, None for "the bridge's default"
    (bench/overload.py sets the overload limits)."""
    return await spawn(name, ["-m", "speko_bridge", "serve", "--port", "{port}",
                              "--log-level", "warning"],
                       env=_without_unset(bridge_env(data_dir, upstream_url, **(env or {}))), cwd=src)


async def start_echo_upstream() -> Server:
    return await spawn("echo upstream", ["bench/echo_upstream.py", "--port", "{port}"],
                       core=LOAD_CORE, ready_path="/stats")


async def start_floor(upstream_url: str) -> Server:
    return await spawn("floor relay", ["bench/floor_relay.py", "--port", "{port}",
                                       "--upstream", upstream_url])


async def mint_tokens(http: aiohttp.ClientSession, base: str, n: int, rate: int) -> list[dict]:
    """Mint ``n`` sessions (before any timing starts)."""
    body = {"provider": "openai", "model": "gpt-realtime", "inputSampleRate": rate,
            "outputSampleRate": rate, "ttlSeconds": 3600}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    sem = asyncio.Semaphore(16)

    async def one() -> dict:
        async with sem, http.post(f"{base}/v1/sessions", json=body, headers=headers) as r:
            if r.status != 201:
                raise RuntimeError(f"mint failed: {r.status} {await r.text()}")
            return await r.json()

    return await asyncio.gather(*(one() for _ in range(n)))


async def endpoint_and_tokens(http: aiohttp.ClientSession, target: str, url: str | None, n: int,
                              rate: int, bridge_base: str | None) -> tuple[str, list[str | None]]:
    """Where ``n`` sockets go and what each offers as subprotocol: minted tokens and the
    minted URL for the bridge; the given URL and no token for the other paths."""
    if target != "bridge":
        return url, [None] * n
    sessions = await mint_tokens(http, bridge_base, n, rate)
    return sessions[0]["url"], [s["token"] for s in sessions]


def write_result(out_dir: Path, name: str, data) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
