"""Connection-level limits (issue 24, finding 5) over raw TCP sockets against the server as
``speko-bridge serve`` configures it (``speko_bridge.server.server_config``)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from speko_bridge.server import MAX_HEADER_BYTES

from .conftest import run_bridge

HUGE_HEADER_BYTES = 100 * 1024 * 1024
CHUNK = 64 * 1024
#: What three refused connections may add to the process (the server runs in this one).
RSS_BUDGET_MIB = 40


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def status_line(reader: asyncio.StreamReader, timeout: float = 5.0) -> str:
    """The answer's status line; 'closed' if the server hung up without one."""
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
    except ConnectionError:
        return "closed"
    return line.decode(errors="replace").strip() or "closed"


async def request(port: int, head: bytes) -> tuple[str, asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    await writer.drain()
    return await status_line(reader), reader, writer


async def test_unfinished_huge_headers_are_cut_off_with_rss_bounded(env):
    async with run_bridge(env) as bridge:
        before = rss_mib()

        async def stream_header() -> tuple[str, int]:
            reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
            sent = 0
            try:
                while sent < HUGE_HEADER_BYTES:
                    writer.write(b"a" * CHUNK)
                    await asyncio.wait_for(writer.drain(), 3)
                    sent += CHUNK
            except (ConnectionError, TimeoutError):
                pass
            answer = await status_line(reader, 3)
            writer.close()
            return answer, sent

        results = await asyncio.gather(*(stream_header() for _ in range(3)))
        grown = rss_mib() - before
        for answer, sent in results:
            assert answer in ("HTTP/1.1 431 Request Header Fields Too Large", "closed"), answer
            assert sent < HUGE_HEADER_BYTES, "the server read 100 MiB of header"
        assert grown < RSS_BUDGET_MIB, f"+{grown:.0f} MiB"
        # the server still answers
        answer, _, writer = await request(bridge.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        writer.close()
        assert answer == "HTTP/1.1 200 OK"


async def test_complete_headers_over_the_limit_are_431_and_under_it_served(env):
    async with run_bridge(env) as bridge:
        cookie = b"Cookie: " + b"c" * (MAX_HEADER_BYTES // 2) + b"\r\n"
        answer, _, writer = await request(bridge.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + cookie + b"\r\n")
        writer.close()
        assert answer == "HTTP/1.1 200 OK"
        # sent in one write, so the headers arrive complete in one read
        big = b"Cookie: " + b"c" * MAX_HEADER_BYTES + b"\r\n"
        answer, reader, writer = await request(bridge.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
        assert answer == "HTTP/1.1 431 Request Header Fields Too Large"
        rest = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert b'"code":"headers_too_large"' in rest
        for path in (b"/v1/realtime", b"/v1/sessions"):  # no request, no WebSocket started
            head = (b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + big + b"\r\n")
            answer, _, writer = await request(bridge.port, head)
            writer.close()
            assert answer == "HTTP/1.1 431 Request Header Fields Too Large"


async def test_slowloris_is_closed_after_the_header_timeout(env):
    timeout = 1.0
    async with run_bridge(env, header_timeout=timeout) as bridge:

        async def dribble(first: bytes = b"") -> tuple[str, float]:
            reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
            writer.write(first + b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            start = time.monotonic()
            if first:  # a good request first, then the slow one on the same connection
                assert await status_line(reader) == "HTTP/1.1 200 OK"
                await reader.readuntil(b'{"status":"ok"}')
            answer = "open"
            while time.monotonic() - start < timeout * 6:
                try:
                    writer.write(b"X-Slow: 1\r\n")
                    await writer.drain()
                    data = await asyncio.wait_for(reader.readline(), 0.2)
                except TimeoutError:
                    continue
                except ConnectionError:
                    answer = "closed"
                    break
                answer = data.decode().strip() or "closed"
                break
            writer.close()
            return answer, time.monotonic() - start

        async def idle() -> tuple[str, float]:
            reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
            start = time.monotonic()
            answer = await status_line(reader, timeout * 6)
            writer.close()
            return answer, time.monotonic() - start

        results = await asyncio.gather(
            dribble(), dribble(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), idle()
        )
        for answer, elapsed in results:
            assert timeout * 0.9 <= elapsed < timeout * 3, elapsed
        # the slow ones are told why (unless the close reset the 408 away); the idle one,
        # which sent nothing, is closed without a word
        assert results[0][0] in ("HTTP/1.1 408 Request Timeout", "closed"), results[0]
        assert results[1][0] in ("HTTP/1.1 408 Request Timeout", "closed"), results[1]
        assert results[2][0] == "closed", results[2]


async def test_ws_upgrade_with_2000_subprotocols_gets_an_http_answer(env):
    async with run_bridge(env) as bridge:
        # one 20 KB header line (over websockets' 8 KiB per line), and a 4 KB one
        for protocols in (", ".join(f"p{i:07d}" for i in range(2000)).encode(), b",".join([b"a"] * 2000)):
            head = (b"GET /v1/realtime HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: " + protocols + b"\r\n\r\n")
            answer, reader, writer = await request(bridge.port, head)
            assert answer.startswith("HTTP/1.1 "), (len(protocols), answer)
            if answer.startswith("HTTP/1.1 101"):  # the bridge answers, then sends a close frame
                await reader.readuntil(b"\r\n\r\n")
                frames = b""
                while b"\x88" not in frames:  # FIN + close opcode
                    chunk = await asyncio.wait_for(reader.read(4096), 5)
                    assert chunk, "closed without a close frame"
                    frames += chunk
            else:
                assert answer == "HTTP/1.1 431 Request Header Fields Too Large", answer
                assert await asyncio.wait_for(reader.read(), 5)  # the body, then the close
                assert reader.at_eof()
            writer.close()


async def test_connections_over_the_process_cap_get_503(env):
    async with run_bridge(env, max_connections=4) as bridge:
        held = [await asyncio.open_connection("127.0.0.1", bridge.port) for _ in range(4)]
        await asyncio.sleep(0.1)
        answer, reader, writer = await request(bridge.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer == "HTTP/1.1 503 Service Unavailable"
        assert b'"code":"server_busy"' in await asyncio.wait_for(reader.read(), 5)
        writer.close()
        for _, w in held:
            w.close()
        await asyncio.sleep(0.2)
        answer, _, writer = await request(bridge.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        writer.close()
        assert answer == "HTTP/1.1 200 OK"


async def test_a_browser_offering_permessage_deflate_gets_plain_frames(env):
    """Every browser offers permessage-deflate; the bridge declines it (speko_bridge/server.py:
    compressing 20 ms audio frames costs CPU for nothing), so the 101 names no extension."""
    async with run_bridge(env) as bridge:
        head = (b"GET /v1/realtime HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n")
        answer, reader, writer = await request(bridge.port, head)
        assert answer == "HTTP/1.1 101 Switching Protocols", answer
        headers = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).lower()
        assert b"sec-websocket-accept:" in headers
        assert b"sec-websocket-extensions" not in headers, headers
        writer.close()
