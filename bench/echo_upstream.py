"""The OpenAI simulator in echo mode as its own process, for the benchmarks.

Every ``input_audio_buffer.append`` comes straight back as a ``response.output_audio.delta``
carrying the same base64 text (no artificial delay); everything else is the simulator's
normal OpenAI behaviour, so a bridge session can also hold a whole turn. ``GET /stats``
reports sockets and, per connection in order, the monotonic time its first message arrived
(the end point of the connect benchmark; CLOCK_MONOTONIC is shared by every process).

    python bench/echo_upstream.py --port 9000
    python bench/echo_upstream.py --port 9000 --reply-ms 200   # no echo: answers each turn

With ``--reply-ms`` appended audio is only buffered (as the service does) and every
``response.create`` is answered at once with that much audio (bench/turn.py: what a
``commit`` costs in time until the first audio of the answer).
"""

from __future__ import annotations

import argparse
import asyncio
import time

import uvloop
from aiohttp import web
from common import quiet_gc

from speko_bridge.simulator.openai import OpenAISimConfig, OpenAISimulator


class EchoUpstream(OpenAISimulator):
    def __init__(self, reply_ms: int | None = None) -> None:
        super().__init__(OpenAISimConfig(echo=reply_ms is None, validate=False, reply_ms=reply_ms or 1000))
        self.first_messages: list[float] = []

    async def _on_text(self, ws, conn, log, text) -> None:
        if not getattr(conn, "bench_seen", False):
            conn.bench_seen = True
            self.first_messages.append(time.monotonic())
        await super()._on_text(ws, conn, log, text)

    def make_app(self) -> web.Application:
        app = super().make_app()

        async def stats(_request: web.Request) -> web.Response:
            return web.json_response({"connections": self.connections, "open": self.open_sockets,
                                      "first_messages": self.first_messages})

        async def reset(_request: web.Request) -> web.Response:
            self.first_messages.clear()
            self.received.clear()
            return web.json_response({})

        app.router.add_get("/stats", stats)
        app.router.add_post("/stats/reset", reset)
        return app


async def main(port: int, reply_ms: int | None) -> None:
    sim = EchoUpstream(reply_ms)
    await sim.start(port=port)
    quiet_gc()  # harness: its collector's pauses are not the bridge's latency
    await asyncio.Event().wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--reply-ms", type=int, help="answer every turn with this much audio instead of echoing")
    args = ap.parse_args()
    uvloop.run(main(args.port, args.reply_ms))
