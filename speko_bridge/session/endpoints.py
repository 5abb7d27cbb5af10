"""The WebSocket endpoints: accept, admit or refuse, run. One function serves every client
protocol; an endpoint is just the choice of its client codec."""

from __future__ import annotations

import asyncio

from starlette.websockets import WebSocket, WebSocketDisconnect

from ..clientproto.base import ClientCodec
from ..clientproto.native import NativeCodec
from ..clientproto.openai_compat import OpenAICompatCodec
from .admission import Refused, Resume, admit, release
from .runner import Session


async def serve(ws: WebSocket, codec: type[ClientCodec]) -> None:
    handshake = codec.handshake(ws.scope.get("subprotocols") or [], ws.headers)
    await ws.accept(subprotocol=handshake.subprotocol)
    state = ws.app.state
    try:
        admission = await admit(state, handshake.token, ws.headers.get("origin"), codec.no_token_message,
                                codec)
    except Refused as refusal:
        await _refuse(ws, codec, refusal)
        return
    if isinstance(admission, Resume):
        # the session runs in the handler of the socket that opened it; this one only
        # serves its client side until it is done with
        await admission.session.attach(ws)
        return
    try:
        session = Session(ws, admission, state, codec)
    except BaseException:
        state.registry.cancel_reservation()
        await release(state.store, admission.slot)
        raise
    # The session runs in a task of its own, not in this socket's handler: it outlives the
    # socket when the client drops and may come back (``grace.py``). This handler serves
    # the socket's side only, until the socket is done with.
    session.task = asyncio.create_task(_run(session, state.store, admission.slot),
                                       name=f"session {session.session_id}")
    await session.serve_link(session.link)


async def _run(session: Session, store, slot) -> None:
    try:
        await session.run()  # the reservation becomes the live session
    finally:
        await release(store, slot)


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
