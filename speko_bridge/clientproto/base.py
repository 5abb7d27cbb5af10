"""What every client protocol codec speaks: intents toward the session, items toward the client.

A client protocol codec is the client-side twin of a provider codec (``providers/``): sans-IO
(no socket, no clock), one instance per session. It reads what the client sends and answers
with **intents** for the session runner (send this audio upstream, ask for a response, cancel,
a tool result, a reply straight back to the client); it writes what the provider said
(``RealtimeFrame`` values from the provider codec) as the messages its client expects, as
**outbox items**. Bad client input never raises: it becomes an :class:`Invalid` intent that
carries the answer the client gets.

The runner (``speko_bridge/session``) composes one client codec with one provider codec and
does all the IO; it never asks which endpoint it is serving.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar, Union

from ..codes import CloseCode, ErrorCode
from ..params import SessionParams

# ------------------------------------------------------------------ client -> runner intents


@dataclass(slots=True)
class SendAudio:
    """User audio, PCM16 LE mono at the codec's :attr:`ClientCodec.input_rate` (any length;
    the runner resamples it and carries an odd byte)."""

    pcm: bytes


@dataclass(slots=True)
class FlushAudio:
    """The user's audio for this turn is complete: send the resampler's tail upstream."""


@dataclass(slots=True)
class Respond:
    """Ask the provider for a response (a reply is now due from it). ``commit``: the user's
    audio so far is the turn (``/v1/realtime``'s commit); without it nothing is committed
    (OpenAI's ``response.create`` in server VAD mode: the detector owns the user's audio)."""

    commit: bool = True


@dataclass(slots=True)
class SendText:
    """A typed user turn (protocol v2): added as the user's words, echoed back as a final
    user transcript, and answered (a reply is now due). With ``respond`` False (OpenAI's
    ``conversation.item.create``) the words are only added: the client's own ``Respond``
    asks for the answer, and the client codec has acknowledged the item itself."""

    text: str
    respond: bool = True


@dataclass(slots=True)
class Configure:
    """The client changed its session (OpenAI's ``session.update``): ``params`` is the whole
    session it asks for. The provider codec applies what it can (:meth:`Codec.configure`),
    and the client codec answers with the effective session (:meth:`ClientCodec.configured`)."""

    params: SessionParams


@dataclass(slots=True)
class Cancel:
    """Cancel the assistant's in-flight response; drop its audio not yet sent."""


@dataclass(slots=True)
class ToolOutput:
    """The result of a tool call, for the provider (a reply is now due from it)."""

    call_id: str
    output: str


@dataclass(slots=True)
class Forward:
    """A client message the provider understands as it is (same protocol on both sides);
    ``reply_due`` when it asks the provider for a response."""

    message: str
    reply_due: bool = False


@dataclass(slots=True)
class Reply:
    """A message straight back to the client (an acknowledgement, an echo)."""

    message: str


@dataclass(slots=True)
class Invalid:
    """A client message that is not part of the protocol: counted by the runner, and
    ``answer`` is sent to the client; the session goes on."""

    answer: str


Intent = Union[SendAudio, FlushAudio, Respond, Cancel, ToolOutput, Forward, Reply, Invalid, SendText, Configure]

# ------------------------------------------------------------------ runner -> client outbox items


@dataclass(slots=True)
class TextMessage:
    """A text WebSocket message for the client."""

    text: str

    def __len__(self) -> int:
        return len(self.text)


@dataclass(slots=True)
class AudioChunk:
    """Assistant audio for the client, PCM16 LE mono at the codec's output rate.

    ``item_id`` is the provider's id of the assistant utterance (``None`` where the provider
    has none); ``place`` is where the client protocol puts it (opaque to the runner: chunks
    join into one message only when both are equal). The runner turns a chunk into a wire
    message with :meth:`ClientCodec.audio_message` when it sends it."""

    item_id: str | None
    pcm: bytes
    place: object = None

    def __len__(self) -> int:
        return len(self.pcm)


OutboxItem = Union[TextMessage, AudioChunk]


@dataclass(frozen=True, slots=True)
class Handshake:
    """What a client presented when opening the socket: the token, and the subprotocol the
    server selects in its answer (``None`` for none)."""

    token: str | None
    subprotocol: str | None


class ClientCodec(abc.ABC):
    """One client protocol, for one session."""

    #: Said when a socket presents no token, in the words of this protocol.
    no_token_message: ClassVar[str]
    #: Whether a session of this protocol survives a dropped client socket (docs/protocol.md
    #: "Resuming after a dropped connection"): its client must understand :meth:`resumed`.
    resumable: ClassVar[bool] = False

    def __init__(self, params: SessionParams, session_id: str, provider: str, expires_at: int = 0) -> None:
        self.params = params
        self.session_id = session_id
        self.provider = provider
        #: When the session reaches its TTL (Unix seconds), for protocols that say so.
        self.expires_at = expires_at

    # -- opening ---------------------------------------------------------------------------

    @staticmethod
    @abc.abstractmethod
    def handshake(subprotocols: list[str], headers: dict[str, str]) -> Handshake:
        """Where this protocol carries the token (before any session exists)."""

    @staticmethod
    @abc.abstractmethod
    def refusal(code: CloseCode, error_code: ErrorCode | str, message: str) -> list[str]:
        """The text messages a socket that may not start a session hears before the close."""

    @property
    @abc.abstractmethod
    def input_rate(self) -> int:
        """The PCM rate of the client's audio."""

    @property
    @abc.abstractmethod
    def output_rate(self) -> int:
        """The PCM rate the client hears."""

    def declared_tools(self) -> frozenset[str] | None:
        """The tool names this client may be asked to call (those of the mint), or None when
        the client declares its own tools to the provider (it hears the provider untouched)."""
        return frozenset(t.name for t in self.params.tools or ())

    def opening(self) -> list[OutboxItem]:
        """What the client hears first, as soon as its session starts."""
        return []

    def upstream_start(self, messages: list[str | bytes]) -> list[str | bytes]:
        """The provider codec's opening messages, as this protocol wants them sent."""
        return messages

    def raw_forwarder(self):
        """A callable ``(upstream message) -> OutboxItem`` when this protocol hands the
        provider's own messages to the client untouched, else None."""
        return None

    # -- client -> intents -----------------------------------------------------------------

    @abc.abstractmethod
    def receive_text(self, text: str) -> list[Intent]:
        """One text message from the client. Never raises."""

    @abc.abstractmethod
    def receive_bytes(self, data: bytes) -> list[Intent]:
        """One binary message from the client. Never raises."""

    # -- provider frames -> client ---------------------------------------------------------

    @abc.abstractmethod
    def frame(self, frame) -> list[OutboxItem]:
        """A ``Transcript``, ``ToolCall``, ``Usage`` or ``Error`` frame from the provider."""

    @abc.abstractmethod
    def audio(self, item_id: str | None, pcm: bytes) -> list[OutboxItem]:
        """Assistant audio already at :attr:`output_rate`."""

    @abc.abstractmethod
    def audio_message(self, chunk: AudioChunk) -> str | bytes:
        """The wire message for an audio chunk (called as it is sent)."""

    def resumed(self) -> list[OutboxItem]:
        """What a socket that took back this session hears first (only if :attr:`resumable`)."""
        return []

    def cancelled(self, barge_in: bool = False) -> list[OutboxItem]:
        """The runner cancelled the in-flight response (``interrupt``, or the provider heard
        the user speak over it: ``barge_in``)."""
        return []

    def configured(self, params: SessionParams, refused: tuple[str, ...]) -> list[OutboxItem]:
        """The answer to a :class:`Configure`: ``params`` is the session now in effect, and
        ``refused`` names the ``SessionParams`` fields the provider could not change."""
        return []

    @abc.abstractmethod
    def final(self, code: int, error_code: str | None, message: str) -> list[str]:
        """The text messages that end the session, before the close with ``code``."""
