"""The outbox's fast path (session/outbox.py): an item that arrives while the writer is idle
and the client's socket takes writes is sent by its producer; otherwise the writer sends it,
as before. What a client would notice if it went wrong: messages out of order, a message
twice or never, audio sent while its socket is behind, or an interrupt that counts audio the
client never got. Sans-IO: a recording ``send`` stands in for the server's."""

from __future__ import annotations

import asyncio

from speko_bridge.clientproto.base import AudioChunk, TextMessage
from speko_bridge.session.outbox import Outbox


class Metrics:
    def __init__(self) -> None:
        self.frames_out = 0
        self.bytes_out = 0


class Sink:
    """What the client's socket got, in order; like uvicorn's send, a send waits while the
    socket is not writable (so a fast-path send there would not return at once)."""

    def __init__(self) -> None:
        self.sent: list[object] = []
        self.writable = asyncio.Event()
        self.writable.set()
        self.fail = False

    async def send_text(self, text: str) -> None:
        await self._send(text)

    async def send_bytes(self, data: bytes) -> None:
        await self._send(data)

    async def _send(self, message) -> None:
        await self.writable.wait()
        if self.fail:
            raise OSError("client disconnected")
        self.sent.append(message)


async def start(outbox: Outbox, sink: Sink, metrics: Metrics) -> asyncio.Task:
    task = asyncio.create_task(outbox.pump(sink.send_text, sink.send_bytes, lambda c: c.pcm, metrics,
                                           sink.writable.wait, sink.writable))
    await asyncio.sleep(0)  # the writer reaches its wait for an item
    return task


async def test_an_item_for_an_idle_writer_is_sent_at_once_and_only_once():
    outbox, sink, metrics = Outbox(), Sink(), Metrics()
    writer = await start(outbox, sink, metrics)
    assert await outbox.send_now(AudioChunk("item_1", b"\x01\x00" * 10))
    assert sink.sent == [b"\x01\x00" * 10]  # before any other task ran
    assert await outbox.send_now(TextMessage('{"type":"usage"}'))
    await asyncio.sleep(0.01)
    assert sink.sent == [b"\x01\x00" * 10, '{"type":"usage"}']  # the writer sent nothing again
    assert (outbox.playing_item, outbox.played_bytes) == ("item_1", 20)
    assert (metrics.frames_out, metrics.bytes_out) == (2, 20 + len('{"type":"usage"}'))
    writer.cancel()


async def test_queued_items_keep_their_place_and_the_socket_behind_gets_nothing_new():
    outbox, sink, metrics = Outbox(), Sink(), Metrics()
    writer = await start(outbox, sink, metrics)
    outbox.put_nowait(AudioChunk("item_1", b"a" * 4))
    assert not await outbox.send_now(AudioChunk("item_1", b"b" * 4))  # one is queued: not past it
    outbox.put_nowait(AudioChunk("item_1", b"b" * 4))
    await asyncio.sleep(0.01)
    assert sink.sent == [b"aaaabbbb"]  # queued together, joined by the writer
    sink.writable.clear()  # the client fell behind
    assert not await asyncio.wait_for(outbox.send_now(TextMessage("late")), 1)  # not stuck in a send
    outbox.put_nowait(TextMessage("late"))
    await asyncio.sleep(0.01)
    assert sink.sent == [b"aaaabbbb"]
    sink.writable.set()
    await asyncio.sleep(0.01)
    assert sink.sent == [b"aaaabbbb", "late"]
    writer.cancel()


async def test_a_failed_send_is_left_to_the_writer_and_no_writer_means_no_fast_path():
    outbox, sink, metrics = Outbox(), Sink(), Metrics()
    assert not await outbox.send_now(TextMessage("x"))  # no writer yet
    writer = await start(outbox, sink, metrics)
    sink.fail = True
    assert not await outbox.send_now(AudioChunk("item_1", b"zz"))
    assert (metrics.frames_out, sink.sent) == (0, [])
    writer.cancel()
    await asyncio.gather(writer, return_exceptions=True)
    sink.fail = False
    assert not await outbox.send_now(TextMessage("y"))  # the writer is gone: nothing sends
    assert sink.sent == []
