"""The WebSocket endpoints: accept, admit or refuse, run. One function serves every client
protocol; an endpoint is just the choice of its client codec."""

from __future__ import annotations

from starlette.websockets import WebSocket, WebSocketDisconnect

from ..clientproto.base import ClientCodec
from ..clientproto.native import NativeCodec
from ..clientproto.openai_compat import OpenAICompatCodec
from .admission import Refused, admit, release
from .runner import Session


async def serve(ws: WebSocket, codec: type[ClientCodec]) -> None:
    handshake = codec.handshake(ws.scope.get("subprotocols") or [], ws.headers)
    await ws.accept(subprotocol=handshake.subprotocol)
    state = ws.app.state
    try:
        admission = await admit(state, handshake.token, ws.headers.get("origin"), codec.no_token_message)
    except Refused as refusal:
        await _refuse(ws, codec, refusal)
        return
    try:
        try:
            session = Session(ws, admission, state, codec)
        except BaseException:
            state.registry.cancel_reservation()
            raise
        await session.run()  # the reservation becomes the live session
    finally:
        await release(state.store, admission.slot)


async def _refuse(ws: WebSocket, codec: type[ClientCodec], refusal: Refused) -> None:
    """Answer a socket that may not start a session, in its protocol's words, then close."""
    ws.app.state.metrics.sockets_refused.labels(str(int(refusal.code))).inc()
    try:
        for text in codec.refusal(refusal.code, refusal.error_code, refusal.message):
            await ws.send_text(text)
        await ws.close(refusal.code, refusal.message[:120])
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the client went away first; nothing left to tell it


async def realtime_endpoint(ws: WebSocket) -> None:
    """``GET /v1/realtime``: the bridge's own protocol."""
    await serve(ws, NativeCodec)


async def openai_realtime_endpoint(ws: WebSocket) -> None:
    """``GET /v1/openai/realtime``: OpenAI's Realtime protocol, any provider behind it."""
    await serve(ws, OpenAICompatCodec)
