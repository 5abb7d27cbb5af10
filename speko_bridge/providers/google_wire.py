"""Gemini Live's wire vocabulary as the codec reads it (msgspec Structs) and writes it.

Field names are the service's camelCase (google-genai ``types.LiveServerMessage`` and the
types it nests); only the fields the codec acts on are declared, so msgspec skips the rest
without building Python objects (the audio path stays cheap). The client messages of the
audio path are here too, pre-rendered.
"""

from __future__ import annotations

import msgspec


class InlineData(msgspec.Struct):
    mimeType: str | None = None
    data: str | None = None


class Part(msgspec.Struct):
    inlineData: InlineData | None = None
    text: str | None = None


class ModelTurn(msgspec.Struct):
    parts: list[Part] | None = None


class Transcription(msgspec.Struct):
    text: str | None = None
    finished: bool | None = None


class ServerContent(msgspec.Struct):
    modelTurn: ModelTurn | None = None
    turnComplete: bool | None = None
    generationComplete: bool | None = None
    interrupted: bool | None = None
    turnCompleteReason: str | None = None
    waitingForInput: bool | None = None
    #: INTERACTION_STATUS_UNSPECIFIED, IN_PROGRESS (more output may follow), IDLE; sent with
    #: turnComplete. ``interimInputTranscription`` is deliberately not read: it repeats the
    #: user's words ahead of ``inputTranscription``, which stays the one source of them.
    interactionStatus: str | None = None
    inputTranscription: Transcription | None = None
    outputTranscription: Transcription | None = None


class FunctionCall(msgspec.Struct):
    id: str | None = None
    name: str | None = None
    args: msgspec.Raw = msgspec.Raw(b"")


class ToolCall(msgspec.Struct):
    functionCalls: list[FunctionCall] | None = None


class Cancellation(msgspec.Struct):
    ids: list[str] | None = None


class TokenCount(msgspec.Struct):
    modality: str | None = None
    tokenCount: int | None = None


class UsageMetadata(msgspec.Struct):
    promptTokensDetails: list[TokenCount] | None = None
    responseTokensDetails: list[TokenCount] | None = None


class GoAway(msgspec.Struct):
    timeLeft: str | None = None


class Resumption(msgspec.Struct):
    newHandle: str | None = None
    resumable: bool | None = None


class VoiceActivity(msgspec.Struct):
    """With automatic activity detection: ``ACTIVITY_START`` / ``ACTIVITY_END`` (google-genai
    ``VoiceActivityType``)."""

    voiceActivityType: str | None = None


class Message(msgspec.Struct):
    setupComplete: dict | None = None
    serverContent: ServerContent | None = None
    toolCall: ToolCall | None = None
    toolCallCancellation: Cancellation | None = None
    usageMetadata: UsageMetadata | None = None
    goAway: GoAway | None = None
    sessionResumptionUpdate: Resumption | None = None
    voiceActivity: VoiceActivity | None = None


#: The rate client audio goes up at (``audio/pcm;rate=16000``, providers.md 3.4).
GEMINI_INPUT_RATE = 16000

decoder = msgspec.json.Decoder(Message)
_encoder = msgspec.json.Encoder()


def to_json(message: dict) -> str:
    """A client message as the JSON text frame sent upstream."""
    return _encoder.encode(message).decode()


# The realtimeInput messages of the audio path, pre-rendered: audio is framed by
# concatenation around its base64, with no encoder call per chunk.
ACTIVITY_START = '{"realtimeInput":{"activityStart":{}}}'
ACTIVITY_END = '{"realtimeInput":{"activityEnd":{}}}'
AUDIO_HEAD = '{"realtimeInput":{"audio":{"mimeType":"audio/pcm;rate=16000","data":"'
AUDIO_TAIL = '"}}}'
STREAM_END = '{"realtimeInput":{"audioStreamEnd":true}}'
