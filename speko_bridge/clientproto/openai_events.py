"""OpenAI Realtime server events written from the bridge's frames: the response and item
state machine of the OpenAI-compatible endpoint (when the provider behind it is not OpenAI).

OpenAI's clients expect every response framed the same way, with stable ids:
``response.created``; per audio item ``response.output_item.added``,
``conversation.item.added``, ``response.content_part.added``, the audio and transcript deltas,
then ``response.output_audio.done``, ``response.output_audio_transcript.done``,
``response.content_part.done``, ``response.output_item.done``, ``conversation.item.done``; per
tool call ``response.output_item.added``, ``response.function_call_arguments.done``,
``response.output_item.done``; and ``response.done`` with usage last. Sans-IO: frames in,
outbox items out.
"""

from __future__ import annotations

import binascii
import enum
from collections import OrderedDict
from collections.abc import Callable

import msgspec

from ..frames import Error, ToolCall, Transcript, Usage
from .base import AudioChunk, OutboxItem, TextMessage

_encode = msgspec.json.Encoder().encode
#: Items a client may ask for again (``conversation.item.retrieve``; the Agents SDK does after
#: every truncation and user transcript): the latest, as last described. Older ones are
#: answered as unknown: memory per session stays bounded.
MAX_REMEMBERED_ITEMS = 128


def error_event(code: str, message: str, *, event_id: str, kind: str = "invalid_request_error",
                param: str | None = None, client_event_id: str | None = None) -> str:
    """An OpenAI ``error`` server event."""
    return _encode({"type": "error", "event_id": event_id, "error": {
        "type": kind, "code": code, "message": message, "param": param,
        "event_id": client_event_id}}).decode()


class Response(enum.Enum):
    """Where the response being written to the client stands."""

    NONE = "none"  # no response open: the next output opens one
    OPEN = "open"  # response.created sent, not done
    CANCELLED = "cancelled"  # open, and the client cancelled it: it ends as cancelled


class ResponseWriter:
    def __init__(self, new_id: Callable[[str], str]) -> None:
        self._id = new_id
        #: The conversation's last item, and the user's last committed audio item.
        self.previous_item: str | None = None
        self.user_item: str | None = None
        #: Duration of the user's last committed audio: the ``usage`` OpenAI's transcription
        #: events carry (the openai types require it; the Agents SDK drops events without it).
        self.user_seconds = 0.0
        self._state = Response.NONE
        self._response_id = ""
        self._output: list[dict] = []
        self._audio_item: dict | None = None
        self._audio_where: dict = {}
        self._audio_prefix = ""
        self._transcript: list[str] = []
        self._final_transcript: str | None = None
        self._cancel_reason = "client_cancelled"
        self._items: OrderedDict[str, dict] = OrderedDict()  # id -> the item (updated in place)
        self._seconds: dict[str, float] = {}  # user audio item -> its duration
        self._transcribing: str | None = None  # the user item whose words are coming
        self._truncated: set[str] = set()  # remembered items the client truncated

    def remember(self, item: dict, seconds: float | None = None) -> None:
        """An item of the conversation, for ``conversation.item.retrieve``."""
        items, item_id = self._items, item["id"]
        items[item_id] = item
        items.move_to_end(item_id)
        if seconds is not None:
            self._seconds[item_id] = seconds
        while len(items) > MAX_REMEMBERED_ITEMS:
            old = items.popitem(last=False)[0]
            self._seconds.pop(old, None)
            self._truncated.discard(old)

    def truncated(self, item_id: str) -> None:
        if item_id in self._items:
            self._truncated.add(item_id)

    def retrieved(self, item_id: str) -> TextMessage | None:
        item = self._items.get(item_id)
        if item is None:
            return None
        if item_id in self._truncated:  # OpenAI's truncate "will delete the server-side text transcript"
            item = {**item, "content": [{**part, "transcript": ""} for part in item.get("content") or ()]}
        return self.event({"type": "conversation.item.retrieved", "item": item})

    @property
    def state(self) -> Response:
        return self._state

    def cancel(self, reason: str = "client_cancelled") -> None:
        """The client cancelled (or the user spoke over it: ``turn_detected``): the open
        response (if any) ends as cancelled."""
        if self._state is Response.OPEN:
            self._state = Response.CANCELLED
            self._cancel_reason = reason

    def event(self, event: dict) -> TextMessage:
        event["event_id"] = self._id("event")
        return TextMessage(_encode(event).decode())

    def error(self, code: str, message: str, *, kind: str = "invalid_request_error",
              param: str | None = None, client_event_id: str | None = None) -> str:
        return error_event(code, message, event_id=self._id("event_err"), kind=kind, param=param,
                           client_event_id=client_event_id)

    def _open_response(self) -> list[OutboxItem]:
        if self._state is not Response.NONE:
            return []
        self._state = Response.OPEN
        self._response_id = self._id("resp")
        self._output = []
        return [self.event({"type": "response.created", "response": {
            "id": self._response_id, "object": "realtime.response", "status": "in_progress",
            "output": [], "output_modalities": ["audio"]}})]

    def _open_audio_item(self) -> list[OutboxItem]:
        out = self._open_response()
        if self._audio_item is not None:
            return out
        item_id = self._id("item")
        index = len(self._output)
        item = self._audio_item = {"id": item_id, "object": "realtime.item", "type": "message",
                                   "role": "assistant", "status": "in_progress", "content": []}
        self.remember(item)
        self._output.append(item)
        self._transcript, self._final_transcript = [], None
        where = self._audio_where = {"response_id": self._response_id, "item_id": item_id,
                                     "output_index": index, "content_index": 0}
        out.append(self.event({"type": "response.output_item.added", "response_id": self._response_id,
                                "output_index": index, "item": item}))
        out.append(self.event({"type": "conversation.item.added",
                                "previous_item_id": self.previous_item, "item": item}))
        self.previous_item = item_id
        out.append(self.event({"type": "response.content_part.added", **where,
                                "part": {"type": "audio", "transcript": ""}}))
        # every delta: this head + its own event id + the fixed ids + the base64 audio
        self._audio_prefix = '",' + _encode(where)[1:-1].decode() + ',"delta":"'
        return out

    def audio(self, item_id: str | None, pcm: bytes) -> list[OutboxItem]:
        out = self._open_audio_item()
        out.append(AudioChunk(item_id, pcm, self._audio_prefix))
        return out

    def audio_message(self, chunk: AudioChunk) -> str:
        return ('{"type":"response.output_audio.delta","event_id":"' + self._id("event") + chunk.place
                + binascii.b2a_base64(chunk.pcm, newline=False).decode() + '"}')

    def frame(self, frame) -> list[OutboxItem]:
        kind = type(frame)
        if kind is Transcript:
            return self._user_transcript(frame) if frame.role == "user" else self._assistant_transcript(frame)
        if kind is ToolCall:
            return self._tool_call(frame)
        if kind is Usage:
            return self._response_done(frame)
        if kind is Error:
            return [TextMessage(self.error(frame.code, frame.message, kind="server_error"))]
        return []

    def _user_transcript(self, frame: Transcript) -> list[OutboxItem]:
        """The user's words belong to the item their first words went to: a provider may
        finish transcribing a turn after the user began the next (Gemini does)."""
        if self.user_item is None:  # words before any commit: one item for all of them
            self.user_item = self._id("item")
        item_id = self._transcribing or self.user_item
        if not frame.final:
            self._transcribing = item_id
            return [self.event({"type": "conversation.item.input_audio_transcription.delta",
                                 "item_id": item_id, "content_index": 0, "delta": frame.text})]
        self._transcribing = None
        item = self._items.get(item_id)
        if item is not None and item.get("role") == "user":
            item["content"] = [{"type": "input_audio", "transcript": frame.text}]
        seconds = self._seconds.get(item_id, self.user_seconds)
        return [self.event({"type": "conversation.item.input_audio_transcription.completed",
                            "item_id": item_id, "content_index": 0, "transcript": frame.text,
                            "usage": {"type": "duration", "seconds": round(seconds, 3)}})]

    def _assistant_transcript(self, frame: Transcript) -> list[OutboxItem]:
        out = self._open_audio_item()
        if frame.final:  # OpenAI sends transcript.done after audio.done: held until then
            self._final_transcript = frame.text
            return out
        self._transcript.append(frame.text)
        out.append(self.event({"type": "response.output_audio_transcript.delta", **self._audio_where,
                                "delta": frame.text}))
        return out

    def _tool_call(self, frame: ToolCall) -> list[OutboxItem]:
        out = self._open_response() + self._close_audio_item()
        index = len(self._output)
        item = {"id": self._id("item"), "object": "realtime.item", "type": "function_call",
                "status": "in_progress", "call_id": frame.call_id, "name": frame.name, "arguments": ""}
        self._output.append(item)
        self.remember(item)
        rid = self._response_id
        out.append(self.event({"type": "response.output_item.added", "response_id": rid,
                                "output_index": index, "item": dict(item)}))
        out.append(self.event({"type": "response.function_call_arguments.done", "response_id": rid,
                                "item_id": item["id"], "output_index": index, "call_id": frame.call_id,
                                "name": frame.name, "arguments": frame.arguments}))
        item.update(status="completed", arguments=frame.arguments)
        out.append(self.event({"type": "response.output_item.done", "response_id": rid,
                                "output_index": index, "item": item}))
        return out

    def _response_done(self, usage: Usage) -> list[OutboxItem]:
        out = self._open_response() + self._close_audio_item()
        cancelled = self._state is Response.CANCELLED
        total_in, total_out = usage.input_audio_tokens, usage.output_audio_tokens
        out.append(self.event({"type": "response.done", "response": {
            "id": self._response_id, "object": "realtime.response",
            "status": "cancelled" if cancelled else "completed",
            "status_details": {"type": "cancelled", "reason": self._cancel_reason} if cancelled else None,
            "output": self._output, "output_modalities": ["audio"],
            "usage": {"total_tokens": total_in + total_out, "input_tokens": total_in,
                      "output_tokens": total_out,
                      "input_token_details": {"audio_tokens": total_in, "text_tokens": 0, "cached_tokens": 0},
                      "output_token_details": {"audio_tokens": total_out, "text_tokens": 0}}}}))
        self._state = Response.NONE
        return out

    def _close_audio_item(self) -> list[OutboxItem]:
        item = self._audio_item
        if item is None:
            return []
        where = self._audio_where
        transcript = self._final_transcript
        if transcript is None:
            transcript = "".join(self._transcript)
        item["content"] = [{"type": "output_audio", "transcript": transcript}]
        out = [self.event({"type": "response.output_audio.done", **where}),
               self.event({"type": "response.output_audio_transcript.done", **where,
                            "transcript": transcript}),
               self.event({"type": "response.content_part.done", **where,
                            "part": {"type": "audio", "transcript": transcript}})]
        item["status"] = "incomplete" if self._state is Response.CANCELLED else "completed"
        out.append(self.event({"type": "response.output_item.done", "response_id": self._response_id,
                                "output_index": where["output_index"], "item": item}))
        out.append(self.event({"type": "conversation.item.done", "previous_item_id": None, "item": item}))
        self._audio_item = None
        return out



class InputBuffer:
    """The client's input audio buffer as OpenAI reports it: what was appended and not yet
    committed, and the user items a commit, or the provider's detection of a turn, makes of it.

    Positions (``audio_start_ms``/``audio_end_ms``) count the audio appended since the session
    began, as OpenAI's do. The item of a detected turn is named at ``speech_started`` and is
    the one ``committed`` and added at ``speech_stopped``; an explicit commit (or a
    ``response.create`` over uncommitted audio) names a new one. Either way the user's
    transcript then belongs to that item (``ResponseWriter.user_item``)."""

    def __init__(self, out: ResponseWriter, new_id: Callable[[str], str], rate: int) -> None:
        self._out = out
        self._id = new_id
        self._bytes_per_ms = 2 * rate / 1000
        self.pending = False  # audio appended since the last commit
        self._pending_bytes = 0  # how much: the user item's duration, for its transcription usage
        self._total_bytes = 0
        self._speech: tuple[str, int] | None = None  # item and start of the speech under way

    def append(self, size: int) -> None:
        self.pending = self.pending or size > 0
        self._pending_bytes += size
        self._total_bytes += size

    def _now_ms(self) -> int:
        return int(self._total_bytes / self._bytes_per_ms)

    def commit(self, item_id: str | None = None, seconds: float | None = None) -> list[OutboxItem]:
        """``committed`` and the user item, added and done."""
        seconds = self._pending_bytes / self._bytes_per_ms / 1000 if seconds is None else seconds
        self._out.user_seconds = seconds
        self.pending = False
        self._pending_bytes = 0
        out = self._out
        item_id = item_id or self._id("item")
        previous, out.previous_item, out.user_item = out.previous_item, item_id, item_id
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user",
                "status": "completed", "content": [{"type": "input_audio", "transcript": None}]}
        out.remember(item, seconds)
        return [out.event({"type": "input_audio_buffer.committed", "previous_item_id": previous,
                           "item_id": item_id}),
                out.event({"type": "conversation.item.added", "previous_item_id": previous, "item": item}),
                out.event({"type": "conversation.item.done", "previous_item_id": previous, "item": item})]

    def speech_started(self) -> list[OutboxItem]:
        if self._speech is not None:
            return []
        item_id, start = self._id("item"), self._now_ms()
        self._speech = (item_id, start)
        # the provider may transcribe while the user still speaks: those words are this item's
        self._out.user_item = item_id
        return [self._out.event({"type": "input_audio_buffer.speech_started", "audio_start_ms": start,
                                 "item_id": item_id})]

    def speech_stopped(self) -> list[OutboxItem]:
        if self._speech is None:
            return []
        (item_id, start), end = self._speech, self._now_ms()
        self._speech = None
        return [self._out.event({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": end,
                                 "item_id": item_id}),
                *self.commit(item_id, (end - start) / 1000)]
