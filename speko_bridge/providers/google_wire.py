"""The part of a Gemini Live server message the codec reads, as msgspec Structs.

Field names are the service's camelCase (google-genai ``types.LiveServerMessage`` and the
types it nests); only the fields the codec acts on are declared, so msgspec skips the rest
without building Python objects (the audio path stays cheap).
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
