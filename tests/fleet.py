"""Bridge replicas as real processes (``python -m speko_bridge serve``), for the scale-out
tests: each one its own interpreter, port, data dir and log file, sharing one Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from .conftest import API_KEY, OTHER_KEY, SIGNING_KEY
from .redis_server import free_port


class BridgeProcess:
    def __init__(self, name: str, env: dict[str, str], directory: Path) -> None:
        self.name = name
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/v1/realtime"
        self.log_path = directory / f"{name}.log"
        # The overload rule off unless a test sets it (as conftest's in-process servers):
        # tests share the machine's cores, and a bridge refusing for the machine's load
        # would fail tests about something else (tests/test_overload.py tests the rule).
        self.env = {**os.environ, "SPEKO_DATA_DIR": str(directory / name),
                    "SPEKO_OVERLOAD_LAG_MS": "0", "SPEKO_OVERLOAD_CPU_PERCENT": "0", **env}
        self.proc: subprocess.Popen | None = None

    async def start(self) -> BridgeProcess:
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "speko_bridge", "serve", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "info"],
            env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-2000:]}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.base}/readyz") as r:
                        if r.status == 200:
                            return self
                await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready in 30 s: {self.log_path.read_text()[-2000:]}")

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    async def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} still running after {timeout} s")
            await asyncio.sleep(0.02)
        return self.proc.returncode

    async def stop(self) -> None:
        if self.proc is None:
            return
        self.terminate()
        try:
            await self.wait(15)
        except TimeoutError:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def logs(self) -> str:
        return self.log_path.read_text()


@contextlib.asynccontextmanager
async def fleet(tmp_path: Path, redis_url: str, upstream_url: str, n: int = 2,
                **env: str) -> AsyncIterator[list[BridgeProcess]]:
    """``n`` replicas sharing ``redis_url`` (under a prefix of their own), their OpenAI
    provider at ``upstream_url`` (the simulator, key ``sk-sim``)."""
    common = {
        "SPEKO_API_KEYS": f"{API_KEY},{OTHER_KEY}",
        "SPEKO_SIGNING_KEY": SIGNING_KEY,
        "SPEKO_REDIS_URL": redis_url,
        "SPEKO_REDIS_PREFIX": f"fleet:{tmp_path.name}:",
        "SPEKO_OPENAI_URL": upstream_url,
        "OPENAI_API_KEY": "sk-sim",
        "SPEKO_SIMULATE": "0",
        "SPEKO_LOG_FORMAT": "json",
        "SPEKO_DRAIN_SECONDS": "0.5",
        **env,
    }
    replicas = [BridgeProcess(chr(ord("a") + i), common, tmp_path) for i in range(n)]
    try:
        await asyncio.gather(*(r.start() for r in replicas))
        yield replicas
    finally:
        await asyncio.gather(*(r.stop() for r in replicas))
