"""OpenAI Realtime's wire vocabulary as the codec reads and writes it.

The server events are msgspec Structs declaring only the fields the codec's handlers read
(names as in the ``openai`` package's ``types/realtime``); everything else is skipped by
msgspec without building Python objects, which keeps the audio-delta path cheap. xAI's
events share the shape (:mod:`.xai` reuses them), so the two fields only xAI sends are here
too.

:data:`HANDLERS` is the dispatch table: server event type -> the name of the codec method
that reads it (GA names and their beta aliases side by side), and :data:`QUIET_EVENTS` the
events that are part of the protocol but need no action (so they are not counted as
unknown). Names rather than functions, so a subclass's override is the one dispatched.

The client events sent on the audio path are pre-rendered JSON fragments: an
``input_audio_buffer.append`` is built by concatenation around the base64 audio, with no
encoder call per chunk.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Err(msgspec.Struct):
    type: str | None = None
    code: str | None = None
    message: str | None = None
    event_id: str | None = None  # the client event the error answers, when it had an id
    param: str | None = None


class TokenDetails(msgspec.Struct):
    audio_tokens: int = 0


class TokenUsage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    input_token_details: TokenDetails | None = None
    output_token_details: TokenDetails | None = None


class StatusDetails(msgspec.Struct):
    type: str | None = None
    reason: str | None = None
    error: Err | None = None


class OutputItem(msgspec.Struct):
    type: str | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None


class Response(msgspec.Struct):
    id: str | None = None
    status: str | None = None
    status_details: StatusDetails | None = None
    usage: TokenUsage | None = None
    output: list[OutputItem] | None = None


class Event(msgspec.Struct):
    type: str
    delta: str | None = None
    transcript: str | None = None
    text: str | None = None
    item_id: str | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    response: Response | None = None
    error: Err | None = None
    usage: TokenUsage | None = None  # xAI puts usage at the top level of response.done
    status: str | None = None  # xAI: a transcription ``.completed`` that is still in progress


decoder = msgspec.json.Decoder(Event)
_encoder = msgspec.json.Encoder()


def to_json(event: dict[str, Any]) -> str:
    """A client event as the JSON text frame sent upstream."""
    return _encoder.encode(event).decode()


APPEND_HEAD = '{"type":"input_audio_buffer.append","audio":"'
APPEND_TAIL = '"}'
COMMIT = '{"type":"input_audio_buffer.commit"}'
#: ``%s``: the event_id that an ``error`` refusing this create names.
RESPONSE_CREATE = '{"type":"response.create","event_id":"%s"}'

#: Server event type -> name of the :class:`~.openai.OpenAICodec` method that reads it.
HANDLERS: dict[str, str] = {
    "session.updated": "_on_session_updated",
    "response.created": "_on_response_created",
    "response.done": "_on_response_done",
    "response.output_audio.delta": "_on_audio_delta",
    "response.audio.delta": "_on_audio_delta",
    "response.output_audio.done": "_on_audio_done",
    "response.audio.done": "_on_audio_done",
    "response.output_audio_transcript.delta": "_on_assistant_delta",
    "response.audio_transcript.delta": "_on_assistant_delta",
    "response.output_text.delta": "_on_assistant_delta",
    "response.text.delta": "_on_assistant_delta",
    "response.output_audio_transcript.done": "_on_assistant_done",
    "response.audio_transcript.done": "_on_assistant_done",
    "response.output_text.done": "_on_assistant_done",
    "response.text.done": "_on_assistant_done",
    "conversation.item.input_audio_transcription.delta": "_on_user_delta",
    "conversation.item.input_audio_transcription.completed": "_on_user_done",
    "conversation.item.input_audio_transcription.failed": "_on_user_failed",
    "response.function_call_arguments.done": "_on_call_done",
    "input_audio_buffer.speech_started": "_on_speech_started",
    "input_audio_buffer.speech_stopped": "_on_speech_stopped",
    "input_audio_buffer.committed": "_on_committed",
    "error": "_on_error",
}

#: Events that need no action but are part of the protocol (not "unknown").
QUIET_EVENTS = frozenset({
    "session.created", "conversation.created", "conversation.item.added",
    "conversation.item.done", "conversation.item.created", "conversation.item.truncated",
    "conversation.item.deleted", "conversation.item.retrieved",
    "conversation.item.input_audio_transcription.segment",
    "input_audio_buffer.cleared", "input_audio_buffer.timeout_triggered",
    "response.output_item.added", "response.output_item.done",
    "response.content_part.added", "response.content_part.done",
    "response.function_call_arguments.delta", "rate_limits.updated",
})
