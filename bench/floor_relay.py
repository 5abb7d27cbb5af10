"""The floor: the thinnest possible bridge on the same stack (starlette + uvicorn + aiohttp +
msgspec), to measure speko_bridge against. No auth, no store, no resampling, no
translation: client binary -> base64 ``input_audio_buffer.append`` upstream, upstream
``response.output_audio.delta`` -> binary to the client. One shared aiohttp session, one
first message upstream (as the bridge sends its session.update), two pumps per socket.

    python bench/floor_relay.py --port 9100 --upstream ws://127.0.0.1:9000/v1/realtime

The server and client settings are options so bench/stack.py can try them side by side;
the defaults are the ones that measured best (the table in bench/stack.py's docstring).
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
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket


class _Event(msgspec.Struct):
    type: str
    delta: str = ""


_decode = msgspec.json.Decoder(_Event).decode
_APPEND_HEAD = '{"type":"input_audio_buffer.append","audio":"'
_SESSION = '{"type":"session.update","session":{"type":"realtime"}}'


class RawChannel:
    """ASGI middleware: keep the server's own receive/send in the scope (as speko_bridge's
    session/asgi.py does), so the relay can skip Starlette's WebSocket layers."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        scope["floor.raw"] = (receive, send)
        await self.app(scope, receive, send)


def make_app(upstream: str, *, autoping: bool = True, read_bufsize: int = 2**16, raw: bool = True) -> Starlette:
    http: aiohttp.ClientSession | None = None

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        nonlocal http
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), read_bufsize=read_bufsize)
        yield
        await http.close()

    async def relay(ws: WebSocket) -> None:
        await ws.accept()
        up = await http.ws_connect(upstream + "?model=gpt-realtime", compress=0, autoping=autoping,
                                   headers={"Authorization": "Bearer sk-sim"})
        await up.send_str(_SESSION)
        receive, send = ws.scope["floor.raw"] if raw else (ws.receive, ws.send)

        async def client_to_upstream() -> None:
            while True:
                message = await receive()
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
                        await send({"type": "websocket.send", "bytes": binascii.a2b_base64(event.delta)})

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
                     lifespan=lifespan, middleware=[Middleware(RawChannel)])


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--ws", default="websockets-sansio", help="uvicorn's WebSocket implementation")
    ap.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"])
    ap.add_argument("--http", default="httptools", choices=["httptools", "h11"])
    ap.add_argument("--deflate", action="store_true", help="accept permessage-deflate when offered")
    ap.add_argument("--max-queue", type=int, default=32, help="uvicorn's ws_max_queue")
    ap.add_argument("--no-autoping", action="store_true", help="aiohttp: do not answer pings itself")
    ap.add_argument("--read-bufsize", type=int, default=2**16, help="aiohttp's read buffer")
    ap.add_argument("--starlette-ws", action="store_true",
                    help="send and receive through Starlette's WebSocket instead of the server's own")
    args = ap.parse_args()
    uvicorn.run(make_app(args.upstream, autoping=not args.no_autoping, read_bufsize=args.read_bufsize,
                         raw=not args.starlette_ws),
                host="127.0.0.1", port=args.port, log_level="warning", ws_max_size=16 * 1024 * 1024,
                ws=args.ws, loop=args.loop, http=args.http, ws_per_message_deflate=args.deflate,
                ws_max_queue=args.max_queue)
