"""Shared fixtures: a real uvicorn server on an ephemeral loopback port, a real SQLite file
in a temp dir, and the provider simulators over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import uvicorn

from speko_bridge.config import load_settings

from .redis_server import RedisServer

API_KEY = "sk_test_0123456789abcdef"
OTHER_KEY = "sk_test_other_0123456789"
SIGNING_KEY = "test-signing-key-0123456789-abcdefghijklmnop"


class BridgeServer:
    """A running bridge: ``base`` is its http URL, ``app`` the Starlette app."""

    def __init__(self, app, server: uvicorn.Server, task: asyncio.Task, port: int) -> None:
        self.app = app
        self.server = server
        self.task = task
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/v1/realtime"

    @property
    def store(self):
        return self.app.state.store

    async def stop(self) -> None:
        self.server.should_exit = True
        await asyncio.wait_for(self.task, 10)


def base_env(tmp_path: Path) -> dict[str, str]:
    return {
        "SPEKO_API_KEYS": f"{API_KEY},{OTHER_KEY}",
        "SPEKO_SIGNING_KEY": SIGNING_KEY,
        "SPEKO_DATA_DIR": str(tmp_path / "data"),
        "SPEKO_DB_PATH": str(tmp_path / "data" / "speko.db"),
        # The overload rule (speko_bridge/load.py) measures the process, and here the process
        # is the test too: its clients, simulators and CPU-heavy checks would count as the
        # bridge's load. Off unless a test sets it (tests/test_overload.py).
        "SPEKO_OVERLOAD_LAG_MS": "0",
        "SPEKO_OVERLOAD_CPU_PERCENT": "0",
    }


@contextlib.asynccontextmanager
async def run_bridge(env: dict[str, str], **server_options) -> AsyncIterator[BridgeServer]:
    """The bridge as ``speko-bridge serve`` runs it (``server.server_config``); the options
    (``header_timeout``, ``max_connections``) shrink its limits for a test."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    from speko_bridge.app import create_app
    from speko_bridge.server import server_config

    settings = load_settings(env, host="127.0.0.1", port=port)
    app = create_app(settings)
    config = server_config(app, settings, port=port, log_level="warning", **server_options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server exited during start-up")
        await asyncio.sleep(0.01)
    bridge = BridgeServer(app, server, task, port)
    try:
        yield bridge
    finally:
        await bridge.stop()
        sock.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    """One real redis-server for the whole run; tests keep apart by key prefix or FLUSHALL."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return base_env(tmp_path)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def auth(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def openai_sims():
    """``await openai_sims(**config)`` starts an OpenAI simulator (key ``sk-sim``) on a
    loopback port; every one started is stopped after the test."""
    from speko_bridge.simulator.openai import OpenAISimConfig, OpenAISimulator

    started = []

    async def start(**config):
        simulator = OpenAISimulator(OpenAISimConfig(api_key="sk-sim", **config))
        await simulator.start("127.0.0.1", 0)
        started.append(simulator)
        return simulator

    yield start
    for simulator in started:
        await simulator.stop()


@pytest.fixture
async def gemini_sim():
    """The Gemini simulator on a loopback port (key ``sk-sim``, 500 ms replies)."""
    from speko_bridge.simulator.google import GoogleSimConfig, GoogleSimulator

    simulator = GoogleSimulator(GoogleSimConfig(api_key="sk-sim", reply_ms=500))
    await simulator.start("127.0.0.1", 0)
    yield simulator
    await simulator.stop()


@pytest.fixture
async def gemini_bridge(env, gemini_sim) -> AsyncIterator[BridgeServer]:
    """A bridge whose ``google`` provider is :func:`gemini_sim`."""
    async with run_bridge({**env, "SPEKO_GOOGLE_URL": gemini_sim.url, "GOOGLE_API_KEY": "sk-sim"}) as server:
        yield server
