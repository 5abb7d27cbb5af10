"""What `make run` gives a new user: `speko-bridge serve` in dev mode with no configuration
prints a key, mints with it, and holds a conversation through the built-in simulator."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sys

import aiohttp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_dev_server_serves_a_conversation_with_no_configuration(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SPEKO_") and k not in ("OPENAI_API_KEY", "GOOGLE_API_KEY", "XAI_API_KEY")}
    env["SPEKO_DEV"] = "1"
    env["PYTHONPATH"] = ROOT  # this checkout's speko_bridge, whichever one is installed
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "speko_bridge", "serve", "--port", str(port),
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output: list[str] = []
    try:
        key = None
        async with asyncio.timeout(30):
            while True:
                line = (await proc.stdout.readline()).decode()
                assert line, "server exited:\n" + "".join(output)
                output.append(line)
                if m := re.search(r"export SPEKO_KEY=(\S+)", line):  # a line to paste into a shell
                    key = m.group(1)
                    # the banner comes after the bind: the port already takes connections
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                if "Application startup complete" in line:
                    break
        assert key and (tmp_path / ".speko" / "dev_api_key").read_text().strip() == key
        assert any("simulator" in line for line in output), "one log line says the simulator is used"

        async def drain():
            while await proc.stdout.readline():
                pass

        drainer = asyncio.create_task(drain())
        models = {"openai": "gpt-realtime", "google": "gemini-2.5-flash-native-audio-preview-12-2025", "xai": "grok-voice-latest"}
        async with aiohttp.ClientSession() as http:
            for provider, model in models.items():  # every provider, offline
                async with http.post(f"http://127.0.0.1:{port}/v1/sessions",
                                     headers={"Authorization": f"Bearer {key}"},
                                     json={"provider": provider, "model": model,
                                           "inputSampleRate": 16000, "outputSampleRate": 16000}) as r:
                    assert r.status == 201, await r.text()
                    created = await r.json()
                frames, audio = [], 0
                async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
                    await ws.send_bytes(b"\x01\x00" * 16000)  # 1 s at 16 kHz
                    await ws.send_str('{"type":"commit"}')
                    async with asyncio.timeout(10):
                        async for msg in ws:
                            if msg.type is aiohttp.WSMsgType.BINARY:
                                audio += len(msg.data)
                            else:
                                frames.append(json.loads(msg.data))
                                if frames[-1]["type"] == "usage":
                                    break
                kinds = {f["type"] for f in frames}
                assert {"transcript", "usage"} <= kinds and audio > 0, (provider, frames)
        drainer.cancel()
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)


async def test_a_busy_port_stops_at_once_with_no_banner(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPEKO_")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "speko_bridge", "serve", "--port", str(port), cwd=tmp_path,
            env={**env, "SPEKO_DEV": "1", "PYTHONPATH": ROOT}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert b"SPEKO_KEY" not in out  # no key printed for a server that never ran
    assert f"127.0.0.1:{port} is already in use".encode() in err and b"PORT=" in err, err
