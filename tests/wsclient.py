"""A browser-style client for the bridge's tests: mint over real HTTP, open the socket
with the token as first subprotocol, read frames until a condition holds."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import socket
import struct
import time
from dataclasses import dataclass, field

import aiohttp

from speko_bridge.simulator.openai import _tone

from .conftest import auth

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Get the weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
MODELS = {"openai": "gpt-realtime", "google": "gemini-2.5-flash-native-audio-preview-12-2025", "xai": "grok-voice-latest"}


def tone(seconds: float, rate: int, freq: float = 440.0) -> bytes:
    n = int(seconds * rate)
    return struct.pack(f"<{n}h", *(int(8000 * math.sin(2 * math.pi * freq * i / rate)) for i in range(n)))


def odd_chunks(data: bytes, sizes=(317, 1001, 3, 640, 999, 2, 4097)):
    i, k = 0, 0
    while i < len(data):
        size = sizes[k % len(sizes)]
        yield data[i : i + size]
        i += size
        k += 1


@dataclass
class Received:
    frames: list[dict] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    audio_messages: int = 0
    close_code: int | None = None
    after_close: list = field(default_factory=list)

    def of(self, kind: str) -> list[dict]:
        return [f for f in self.frames if f["type"] == kind]

    def text(self, role: str) -> tuple[str, list[str]]:
        ts = [f for f in self.of("transcript") if f["role"] == role]
        return "".join(f["text"] for f in ts if not f["final"]), [f["text"] for f in ts if f["final"]]


async def read(ws, into: Received, until, timeout: float = 10.0) -> Received:
    """Read frames into ``into`` until ``until(into)`` is true or the socket closes."""
    async with asyncio.timeout(timeout):
        while not until(into):
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.BINARY:
                into.audio += msg.data
                into.audio_messages += 1
                if into.of("close"):
                    into.after_close.append(msg)
            elif msg.type is aiohttp.WSMsgType.TEXT:
                frame = json.loads(msg.data)
                if into.of("close"):
                    into.after_close.append(frame)
                into.frames.append(frame)
            else:
                into.close_code = ws.close_code
                break
    return into


def closed(r: Received) -> bool:
    return r.close_code is not None


async def mint(http, bridge, provider: str = "openai", **params) -> dict:
    body = {"provider": provider, "model": MODELS[provider], **params}
    async with http.post(f"{bridge.base}/v1/sessions", json=body, headers=auth()) as r:
        assert r.status == 201, await r.text()
        return await r.json()


async def record(http, bridge, session_id: str) -> dict:
    async with http.get(f"{bridge.base}/v1/sessions/{session_id}", headers=auth()) as r:
        return await r.json()


async def wait_record(http, bridge, session_id: str, status: str, timeout=5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        rec = await record(http, bridge, session_id)
        if rec["status"] == status and rec["closeCode"] is not None or time.monotonic() > deadline:
            return rec
        await asyncio.sleep(0.05)


def assert_clean_close(r: Received, code: int) -> None:
    assert r.of("close") and r.of("close")[-1]["code"] == code, r.frames[-3:]
    assert r.close_code == code
    assert r.after_close == [], "close must be the last message"


async def expect_refusal(url: str, protocols, code: int, error: str, **kw) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(url, protocols=protocols, **kw) as ws:
            if protocols:
                assert ws.protocol == protocols[0]  # the handshake selected the token
            got = await read(ws, Received(), closed)
    assert got.of("error")[0]["code"] == error
    assert_clean_close(got, code)


async def interrupt_mid_answer(ws, rate: int = 24000) -> tuple[Received, int]:
    """Speak, commit, interrupt once 0.3 s of the answer arrived, and read up to the
    cancelled reply's usage. Returns the frames and the audio bytes heard before the
    interrupt; asserts that little audio came after it (what was already in flight)."""
    await ws.send_bytes(tone(0.3, rate))
    await ws.send_str('{"type":"commit"}')
    got = await read(ws, Received(), lambda r: len(r.audio) >= rate * 2 * 0.3)
    await ws.send_str('{"type":"interrupt"}')
    heard = len(got.audio)
    await read(ws, got, lambda r: r.of("usage"))
    late = len(got.audio) - heard
    assert late <= rate * 2 * 0.2, late
    assert len(got.audio) < rate * 2 * 3  # far less than the 3 s reply
    return got, heard


class RawClient:
    """A WebSocket client over a bare TCP socket that reads only when told to: a browser
    tab whose page stopped reading. Tiny receive buffers make the bridge feel it at once."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, path: str, protocols: list[str], rcvbuf: int = 4096,
                      mss: int | None = None) -> RawClient:
        """``mss``: the segment size to announce, as a client on a real network path does
        (1460 on Ethernet). Loopback's 64 KiB segments make the server's kernel size its
        send buffer in megabytes, which would absorb seconds of audio before the bridge
        notices a slow reader."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if mss is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {', '.join(protocols)}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send(self, payload: bytes | str) -> None:
        opcode = 0x1 if isinstance(payload, str) else 0x2
        data = payload.encode() if isinstance(payload, str) else payload
        n = len(data)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 1 << 16:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.writer.write(head + mask + masked)

    async def receive(self) -> tuple[int, bytes]:
        """The next server message: (opcode, payload), fragments joined; 0x8 is the close
        frame. Pings are skipped (the tests using this client are far shorter than
        uvicorn's ping timeout)."""
        opcode, parts = 0, []
        while True:
            b0, b1 = await self.reader.readexactly(2)
            size = b1 & 0x7F
            if size == 126:
                size = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            payload = await self.reader.readexactly(size)  # server frames are not masked
            op = b0 & 0x0F
            if op == 0x8:
                return op, payload
            if op >= 0x8:
                continue
            opcode = op or opcode
            parts.append(payload)
            if b0 & 0x80:
                return opcode, b"".join(parts)

    async def read(self, into: Received, until, timeout: float = 10.0, pause: float = 0.0) -> Received:
        """As :func:`read`, over this client; ``pause`` seconds between messages makes it a
        listener that reads slower than the bridge sends."""
        async with asyncio.timeout(timeout):
            while not until(into):
                try:
                    opcode, payload = await self.receive()
                except (asyncio.IncompleteReadError, ConnectionResetError):
                    into.close_code = 1006
                    break
                if opcode == 0x2:
                    into.audio += payload
                    into.audio_messages += 1
                elif opcode == 0x1:
                    into.frames.append(json.loads(payload))
                else:
                    into.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    break
                if pause:
                    await asyncio.sleep(pause)
        return into

    async def read_to_end(self) -> int:
        """Read until the server closes the TCP connection (EOF or reset); bytes read."""
        total = 0
        try:
            while chunk := await self.reader.read(65536):
                total += len(chunk)
        except ConnectionResetError:
            pass
        return total

    def close(self) -> None:
        self.writer.transport.abort()


#: A long reply, sent by the simulator as fast as TCP allows: far more than the client's
#: socket buffers hold (a few seconds of audio), and more than the bridge's outbox holds
#: (256 deltas of 100 ms), so when the listener falls behind, most of the reply waits in
#: the bridge and some of it behind a full outbox, in the upstream reader's hands.
LONG_REPLY_MS = 40_000
PCM_BYTES_PER_MS = 48  # 24 kHz PCM16
ETHERNET_MSS = 1460


def reply_signal(ms: int) -> bytes:
    """The simulator's reply audio (the same signal for every reply), to match against."""
    return _tone(ms)


async def fall_behind_and_interrupt(client: RawClient, got: Received) -> int:
    """Ask for a long reply, stop reading while the bridge queues it, read a few messages
    slowly (the client writer keeps joining queued chunks and waiting on the socket),
    interrupt, then read everything up to the cancelled reply's usage. Returns the audio
    bytes received of that reply."""
    before, messages, usages = len(got.audio), got.audio_messages, len(got.of("usage"))
    client.send(tone(0.2, 24000))
    client.send('{"type":"commit"}')
    await asyncio.sleep(0.3)
    await client.read(got, lambda r: r.audio_messages >= messages + 4, pause=0.03)
    client.send('{"type":"interrupt"}')
    await client.read(got, lambda r: len(r.of("usage")) > usages or closed(r))
    assert len(got.of("usage")) == usages + 1 and not closed(got), got.frames[-3:]
    return len(got.audio) - before
