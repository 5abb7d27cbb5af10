"""``/v1/realtime``: the bridge's own client protocol (docs/protocol.md sections 3-5).

Binary messages are PCM16 audio at the minted ``inputSampleRate``; text messages are the
JSON control messages of :mod:`speko_bridge.frames`; everything the provider says comes back
as one ``RealtimeFrame`` each (audio as raw binary messages at ``outputSampleRate``).
"""

from __future__ import annotations

from ..frames import (
    Close,
    Commit,
    Error,
    ErrorCode,
    Interrupt,
    InvalidMessage,
    Resumed,
    Text,
    ToolResult,
    decode_client_message,
    encode_frame,
)
from .base import (
    AudioChunk,
    Cancel,
    ClientCodec,
    FlushAudio,
    Handshake,
    Intent,
    Invalid,
    OutboxItem,
    Respond,
    SendAudio,
    SendText,
    TextMessage,
    ToolOutput,
)


class NativeCodec(ClientCodec):
    no_token_message = "no token: offer it as the first WebSocket subprotocol"
    resumable = True

    @staticmethod
    def handshake(subprotocols: list[str], headers: dict[str, str]) -> Handshake:
        # The first offered subprotocol is selected even when it turns out to be a bad token:
        # a browser fails a handshake that offered subprotocols and got none back, and would
        # see only 1006 instead of our error frame.
        token = subprotocols[0] if subprotocols else None
        return Handshake(token, token)

    @staticmethod
    def refusal(code, error_code, message: str) -> list[str]:
        return [encode_frame(Error(error_code, message)), encode_frame(Close(code, message))]

    @property
    def input_rate(self) -> int:
        return self.params.input_sample_rate

    @property
    def output_rate(self) -> int:
        return self.params.output_sample_rate

    def receive_bytes(self, data: bytes) -> list[Intent]:
        return [SendAudio(data)]

    def receive_text(self, text: str) -> list[Intent]:
        try:
            message = decode_client_message(text)
        except InvalidMessage as exc:
            return [Invalid(encode_frame(Error(ErrorCode.INVALID_MESSAGE, str(exc))))]
        kind = type(message)
        if kind is Commit:
            return [FlushAudio(), Respond()]
        if kind is Interrupt:
            return [Cancel()]
        if kind is ToolResult:
            return [ToolOutput(message.call_id, message.output)]
        if kind is Text:
            return [SendText(message.text)]
        raise AssertionError(f"unhandled client message {kind.__name__}")  # pragma: no cover

    def frame(self, frame) -> list[OutboxItem]:
        return [TextMessage(encode_frame(frame))]

    def resumed(self) -> list[OutboxItem]:
        return [TextMessage(encode_frame(Resumed(self.session_id)))]

    def audio(self, item_id: str | None, pcm: bytes) -> list[OutboxItem]:
        return [AudioChunk(item_id, pcm)]

    def audio_message(self, chunk: AudioChunk) -> bytes:
        return chunk.pcm

    def final(self, code: int, error_code: str | None, message: str) -> list[str]:
        out = [encode_frame(Error(error_code, message))] if error_code is not None else []
        return out + [encode_frame(Close(code, message))]
