"""The floor: the thinnest possible bridge on the same stack (starlette + uvicorn + aiohttp +
msgspec), to measure speko_bridge against. No auth, no store, no resampling, no
translation: client binary -> base64 ``input_audio_buffer.append`` upstream, upstream
``response.output_audio.delta`` -> binary to the client. One shared aiohttp session, one
first message upstream (as the bridge sends its session.update), two pumps per socket.

    python bench/floor_relay.py --port 9100 --upstream ws://127.0.0.1:9000/v1/realtime
"""

from __future__ import annotations

import argparse
import asyncio
import binascii
import contextlib

import aiohttp
import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket


class _Event(msgspec.Struct):
    type: str
    delta: str = ""


_decode = msgspec.json.Decoder(_Event).decode
_APPEND_HEAD = '{"type":"input_audio_buffer.append","audio":"'
_SESSION = '{"type":"session.update","session":{"type":"realtime"}}'


def make_app(upstream: str) -> Starlette:
    http: aiohttp.ClientSession | None = None

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        nonlocal http
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        yield
        await http.close()

    async def relay(ws: WebSocket) -> None:
        await ws.accept()
        up = await http.ws_connect(upstream + "?model=gpt-realtime", compress=0,
                                   headers={"Authorization": "Bearer sk-sim"})
        await up.send_str(_SESSION)

        async def client_to_upstream() -> None:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                data = message.get("bytes")
                if data:
                    await up.send_str(_APPEND_HEAD + binascii.b2a_base64(data, newline=False).decode() + '"}')

        async def upstream_to_client() -> None:
            async for msg in up:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    event = _decode(msg.data)
                    if event.type == "response.output_audio.delta":
                        await ws.send_bytes(binascii.a2b_base64(event.delta))

        tasks = [asyncio.create_task(client_to_upstream()), asyncio.create_task(upstream_to_client())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await up.close()
        with contextlib.suppress(Exception):
            await ws.close()

    async def healthz(_request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/healthz", healthz), WebSocketRoute("/relay", relay)],
                     lifespan=lifespan)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True)
    args = ap.parse_args()
    uvicorn.run(make_app(args.upstream), host="127.0.0.1", port=args.port, log_level="warning",
                ws_max_size=16 * 1024 * 1024)
