"""What waits to be sent to the client, and the loop that sends it.

The upstream reader puts items here (``TextMessage``, ``AudioChunk``); one writer task sends
them in order. The outbox is bounded twice, in items and in bytes, so memory per session is
fixed whatever the peers do: when the client reads too slowly the upstream reader waits,
and TCP pushes back on the provider. An outbox that is empty always takes one item, so a
single message larger than the byte bound still goes through (alone).

The writer keeps what an interrupt needs to know: which assistant item the client is
hearing and how much of it was sent (``playing_item``, ``played_bytes``), and which items
are muted (their late audio is dropped, not sent).

Fast path (:meth:`Outbox.send_now`): when the writer is idle (nothing queued, nothing in
hand) and the client's socket takes writes, the item is sent by the task that produced it,
exactly as the writer would have sent it a moment later. Waking the writer task for each
20 ms chunk cost more than the send itself (issue 23's profile; the floor relay sends from
its reading task). It needs a send that completes without yielding when the socket is
writable (uvicorn's does) and the writability event (``asgi.writable_event``); without
them every item goes through the writer.
"""

from __future__ import annotations

import asyncio
from collections import deque

from ..clientproto.base import AudioChunk, OutboxItem, TextMessage

#: Outbox depth in messages. Providers send ~50-100 ms of audio per delta, so 256 messages
#: is tens of seconds of audio: a client that is this far behind is not listening any more.
OUTBOX_MAX_ITEMS = 256
#: Outbox size in bytes (characters for text): 256 KiB is 2.7 s of 24 kHz PCM16 waiting
#: for the client's socket (browsers take audio as it comes and buffer it themselves), and
#: bounds the session's memory however large the messages are (a count alone let 256
#: messages of 4 MiB each pile up).
OUTBOX_MAX_BYTES = 256 * 1024
#: Largest audio message made by joining queued chunks: 32 KiB is 0.68 s of 24 kHz PCM16.
COALESCE_MAX_BYTES = 32 * 1024
#: Interrupted item ids remembered to mute their late deltas; only recent ones matter.
MUTED_ITEMS_MAX = 64


class Outbox:
    def __init__(self, max_items: int = OUTBOX_MAX_ITEMS, max_bytes: int = OUTBOX_MAX_BYTES) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: deque[OutboxItem] = deque()
        self._bytes = 0
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        #: Incremented by every :meth:`drop_audio`: an item the writer holds from before a
        #: drop is dropped too.
        self.epoch = 0
        self.playing_item: str | None = None
        self.played_bytes = 0
        self.muted: set[str | None] = set()
        #: (send_text, send_bytes, audio_message, metrics, writable event) while the writer
        #: waits for an item and the fast path may send in its place; None otherwise.
        self._idle_sink: tuple | None = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def _full(self) -> bool:
        return len(self._items) >= self.max_items or self._bytes >= self.max_bytes

    def put_nowait(self, item: OutboxItem) -> bool:
        """Queue ``item``; False (nothing queued) when the outbox is full."""
        items = self._items
        if items and self._full():
            return False
        items.append(item)
        self._bytes += len(item)
        self._readable.set()
        if self._full():
            self._writable.clear()
        return True

    async def put(self, item: OutboxItem) -> None:
        """Queue ``item``, waiting while the outbox is full (the caller bounds the wait)."""
        while not self.put_nowait(item):
            await self._writable.wait()

    def _pop(self) -> OutboxItem:
        item = self._items.popleft()
        self._bytes -= len(item)
        if not self._items:
            self._readable.clear()
        if not self._full():
            self._writable.set()
        return item

    async def get(self) -> OutboxItem:
        while not self._items:
            await self._readable.wait()
        return self._pop()

    def join_audio(self, first: AudioChunk) -> tuple[AudioChunk, OutboxItem | None]:
        """Join the audio chunks queued right behind ``first`` that belong to the same item
        and place (up to ``COALESCE_MAX_BYTES``). Returns the joined chunk and the first
        queued item that did not join (taken out of the outbox), or None."""
        parts = [first.pcm]
        size = len(first.pcm)
        while self._items:
            nxt = self._pop()
            if (type(nxt) is not AudioChunk or nxt.item_id != first.item_id or nxt.place != first.place
                    or size + len(nxt.pcm) > COALESCE_MAX_BYTES):
                return AudioChunk(first.item_id, b"".join(parts), first.place), nxt
            parts.append(nxt.pcm)
            size += len(nxt.pcm)
        if len(parts) == 1:
            return first, None
        return AudioChunk(first.item_id, b"".join(parts), first.place), None

    def drop_audio(self) -> int:
        """Drop assistant audio not yet sent and mute late deltas of the same items (the
        provider may still be sending them when the cancel lands). Returns the bytes
        dropped."""
        self.epoch += 1
        muted = self.muted
        if len(muted) > MUTED_ITEMS_MAX:
            muted.clear()
        muted.add(self.playing_item)
        dropped = 0
        kept: deque[OutboxItem] = deque()
        for item in self._items:
            if type(item) is AudioChunk:
                muted.add(item.item_id)
                dropped += len(item.pcm)
            else:
                kept.append(item)
        # Providers without item ids stop by themselves (their codec says ClearAudio).
        muted.discard(None)
        self._items = kept
        self._bytes = sum(len(item) for item in kept)
        if not kept:
            self._readable.clear()
        if not self._full():
            self._writable.set()
        return dropped

    def clear(self) -> None:
        """Drop everything queued (the client it was for is gone) and forget what it was
        hearing; a chunk the writer holds from before is dropped too (new epoch)."""
        self.epoch += 1
        self._items = deque()
        self._bytes = 0
        self._readable.clear()
        self._writable.set()
        self.playing_item = None
        self.played_bytes = 0

    def _playing(self, chunk: AudioChunk) -> None:
        """``chunk`` is being sent: the item the client hears is now its item (set before
        the send, so an interrupt during the send mutes that item)."""
        if chunk.item_id != self.playing_item:
            self.playing_item = chunk.item_id
            self.played_bytes = 0

    async def send_now(self, item: OutboxItem) -> bool:
        """Send ``item`` from the calling task if the writer is idle and the socket takes
        writes now (the module docstring says why); False when the caller must queue it:
        the writer is busy or behind, or the send failed (the writer then meets the same
        failure and handles it as always)."""
        sink = self._idle_sink
        if sink is None or self._items or not sink[4].is_set():
            return False
        send_text, send_bytes, audio_message, metrics, _ = sink
        try:
            if type(item) is TextMessage:
                await send_text(item.text)
                metrics.bytes_out += len(item.text)
            else:
                self._playing(item)
                message = audio_message(item)
                if type(message) is str:
                    await send_text(message)
                else:
                    await send_bytes(message)
                metrics.bytes_out += len(item.pcm)
                self.played_bytes += len(item.pcm)
        except (RuntimeError, OSError):
            return False
        metrics.frames_out += 1
        return True

    async def pump(self, send_text, send_bytes, audio_message, metrics, writable,
                   writable_event: asyncio.Event | None = None) -> None:
        """Send everything queued, in order, until cancelled. Audio chunks of one item
        already queued behind the one in hand go out as one message: the bytes and their
        order are the same, but a client or server that fell behind catches up with fewer,
        larger messages instead of paying per-message costs for every 20 ms.

        It waits until the socket takes writes (``writable()``) *before* it takes the next
        item: an item is never held while the client is behind, so an interrupt drops every
        chunk not yet written (only a chunk taken while joining can be held; it is dropped
        when taken back), and what was written is what the truncation counts.

        With ``writable_event`` (the event ``writable`` waits on), an item that arrives while
        the writer is idle may be sent by its producer (:meth:`send_now`)."""
        carried: OutboxItem | None = None  # taken while joining, did not join; sent next
        carried_at = 0  # the epoch when it was taken
        sink = None if writable_event is None else (send_text, send_bytes, audio_message, metrics,
                                                    writable_event)
        while True:
            await writable()
            if carried is not None:
                item, carried = carried, None
                if type(item) is AudioChunk and self.epoch != carried_at:
                    # interrupted while held here: dropped and muted like the queued ones
                    metrics.dropped.inc(len(item.pcm))
                    if item.item_id is not None:
                        self.muted.add(item.item_id)
                    continue
            elif self._items:
                item = self._pop()
            else:
                self._idle_sink = sink
                try:
                    item = await self.get()
                finally:
                    self._idle_sink = None
            metrics.frames_out += 1
            if type(item) is TextMessage:
                metrics.bytes_out += len(item.text)
                await send_text(item.text)
                continue
            if self._items:
                item, carried = self.join_audio(item)
                carried_at = self.epoch
            self._playing(item)
            message = audio_message(item)
            if type(message) is str:
                await send_text(message)
            else:
                await send_bytes(message)
            metrics.bytes_out += len(item.pcm)
            self.played_bytes += len(item.pcm)
