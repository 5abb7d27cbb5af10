"""The wire vocabulary of ``/v1/realtime`` (docs/protocol.md sections 4 and 5).

Everything a client sends as text and everything the bridge sends back as text is a
msgspec tagged Struct here, so that decoding *is* validation and encoding is one call.
Audio never becomes a Struct: it travels as raw binary WebSocket messages (PCM16 LE mono).

Close codes and error codes live in :mod:`speko_bridge.codes`; they are re-exported here
so ``from speko_bridge.frames import CloseCode, ErrorCode`` keeps working.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal, Union

import msgspec

from .codes import CloseCode, ErrorCode  # noqa: F401  (re-exported: existing imports)

# --------------------------------------------------------------------------- client -> server


class Commit(msgspec.Struct, tag="commit", tag_field="type", forbid_unknown_fields=True):
    """End of the user's turn: flush audio upstream and ask for a response."""


class Interrupt(msgspec.Struct, tag="interrupt", tag_field="type", forbid_unknown_fields=True):
    """Cancel the in-flight response; undelivered assistant audio is dropped."""


class ToolResult(
    msgspec.Struct, tag="tool_result", tag_field="type", rename="camel", forbid_unknown_fields=True
):
    """The result of a ``tool_call``; ``output`` is a string (JSON text is fine)."""

    call_id: str
    output: str


#: A typed turn's limit in UTF-8 bytes (protocol v2: 32 KiB, as ``systemPrompt``): a
#: message, not a document.
MAX_TEXT_BYTES = 32 * 1024


class Text(msgspec.Struct, tag="text", tag_field="type", forbid_unknown_fields=True):
    """Protocol v2: a typed user turn, added as the user's words and answered (any mode)."""

    text: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT_BYTES)]


ClientMessage = Union[Commit, Interrupt, ToolResult, Text]

_client_decoder = msgspec.json.Decoder(ClientMessage)


class InvalidMessage(ValueError):
    """A client text message that is not one of :data:`ClientMessage`."""


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise InvalidMessage(f"duplicate key in object: {sorted({k for k in keys if keys.count(k) > 1})}")
    return dict(pairs)


def decode_client_message(data: str | bytes) -> ClientMessage:
    """Decode one client text message, raising :class:`InvalidMessage` with a readable reason.

    A repeated key (``{"type":"commit","type":"interrupt"}``) is refused: JSON parsers
    disagree on which one wins, so the message has no single meaning. Client text messages
    are a few per turn, so the second, duplicate-checking parse costs nothing that matters."""
    try:
        message = _client_decoder.decode(data)
    except msgspec.DecodeError as exc:  # ValidationError is a subclass
        raise InvalidMessage(str(exc)) from None
    json.loads(data, object_pairs_hook=_no_duplicate_keys)
    if type(message) is Text and not message.text.isascii() and len(message.text.encode()) > MAX_TEXT_BYTES:
        raise InvalidMessage(f"text is over {MAX_TEXT_BYTES} bytes as UTF-8 - at `$.text`")
    return message


# --------------------------------------------------------------------------- server -> client


class Transcript(msgspec.Struct, tag="transcript", tag_field="type"):
    """A delta (``final=False``) or the whole utterance (``final=True``)."""

    role: Literal["user", "assistant"]
    text: str
    final: bool


class ToolCall(msgspec.Struct, tag="tool_call", tag_field="type", rename="camel"):
    call_id: str
    name: str
    arguments: str  # JSON text


class Usage(msgspec.Struct, tag="usage", tag_field="type", rename="camel"):
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0


class Error(msgspec.Struct, tag="error", tag_field="type"):
    code: str
    message: str


class Close(msgspec.Struct, tag="close", tag_field="type"):
    code: int
    reason: str = ""


class Resumed(msgspec.Struct, tag="resumed", tag_field="type", rename="camel"):
    """v2: the first frame on a socket that took back a session after a dropped connection."""

    session_id: str


class Speech(msgspec.Struct, tag="speech", tag_field="type"):
    """Protocol v2, ``server``/``semantic`` turns only: the provider heard the user start
    (``started``: the reply was already cut, stop playback) or stop (``stopped``) speaking."""

    state: Literal["started", "stopped"]


class Audio(msgspec.Struct):
    """The binary ``audio`` frame as SDKs expose it: PCM16 LE mono at ``sample_rate``.

    Not a JSON message: on the wire it is the raw bytes of ``pcm``. It is in the union so
    that consumers (the Python SDK, the conformance tests) can pattern-match one type.
    """

    pcm: bytes
    sample_rate: int
    type: Literal["audio"] = "audio"


TextFrame = Union[Transcript, ToolCall, Usage, Error, Close, Speech, Resumed]
RealtimeFrame = Union[Audio, Transcript, ToolCall, Usage, Error, Close, Speech, Resumed]

_encoder = msgspec.json.Encoder()
_frame_decoder = msgspec.json.Decoder(TextFrame)


def encode_frame(frame: TextFrame) -> str:
    """Serialise a text frame to the JSON text sent to the client."""
    return _encoder.encode(frame).decode()


def decode_frame(data: str | bytes) -> TextFrame:
    """Parse a server text frame (used by the Python SDK and tests)."""
    return _frame_decoder.decode(data)
