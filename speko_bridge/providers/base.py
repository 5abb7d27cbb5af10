"""The codec interface every provider implements, and the events a codec hands the bridge.

A codec is sans-IO (in the manner of h11 / wsproto): it never touches a socket or a clock.
The bridge feeds it client intents and raw upstream messages; it answers with the
messages to send upstream (``Outbound``: ``str`` for a text frame, ``bytes`` for binary)
and with :data:`CodecEvent` values for the bridge to act on.

Audio crossing a codec is always PCM16 LE mono at the *provider's* rate: the bridge owns the
resamplers (``speko_bridge/audio.py``) and converts to/from the client's rates around it.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import ClassVar, Union

from msgspec.structs import replace

from ..codes import CloseCode, ErrorCode
from ..frames import Error, ToolCall, Transcript, Usage
from ..params import SessionParams

Outbound = Union[str, bytes]


@dataclass(slots=True)
class Ready:
    """Upstream accepted the session config: held client audio may now be sent."""


@dataclass(slots=True)
class AudioOut:
    """Assistant audio, PCM16 LE mono at ``sample_rate`` (the provider's rate).

    ``item_id`` identifies the assistant utterance the audio belongs to (used for
    truncation on interrupt); ``None`` where the provider has no such id.
    """

    pcm: bytes
    sample_rate: int
    item_id: str | None = None


@dataclass(slots=True)
class AudioDone:
    """The current assistant audio segment ended: flush the output resampler's tail."""


@dataclass(slots=True)
class ClearAudio:
    """The provider cancelled the reply (e.g. barge-in): drop queued assistant audio."""


@dataclass(slots=True)
class SpeechStarted:
    """The provider heard the user start speaking (``server``/``semantic`` turn detection):
    the bridge cancels the reply at the audio delivered (barge-in), drops its unsent audio,
    then tells the client ``speech: started``. Codecs emit it only in those modes; in
    ``manual`` mode a provider's own cut is a :class:`ClearAudio`."""


@dataclass(slots=True)
class SpeechStopped:
    """The provider decided the user's turn is over: a response is now due from it."""


@dataclass(slots=True)
class Fatal:
    """The upstream is unusable: send ``error`` then ``close`` with these codes and end."""

    close_code: CloseCode
    error_code: ErrorCode
    message: str


@dataclass(slots=True)
class Malformed:
    """An upstream message the codec could not read (not JSON, nested too deep, a field of
    the wrong type, an audio payload that is not base64, ...): it, or the unreadable part of
    it, was skipped. At most one per :meth:`Codec.receive` call, so counting these events
    counts messages (the ``speko_upstream_malformed`` metric and the run of unreadable
    messages that ends a session). ``reason`` is short, for logs and tests; it never carries
    the message itself."""

    reason: str


@dataclass(slots=True)
class Reconnect:
    """The provider announced it will drop this connection (Gemini ``goAway``): open a new
    upstream socket and send :meth:`Codec.start` again (which then carries the resumption
    handle). Client audio is held meanwhile; the client sees no break."""

    reason: str


#: The ``SessionParams`` fields a client may change after the mint (``Configure``), in the
#: order an answer names them.
CONFIGURABLE = ("system_prompt", "voice", "tools", "turn_detection")


def changed_fields(old: SessionParams, new: SessionParams) -> tuple[str, ...]:
    """Which of :data:`CONFIGURABLE` differ between two sessions."""
    return tuple(name for name in CONFIGURABLE if getattr(old, name) != getattr(new, name))


@dataclass(slots=True)
class Configured:
    """What a provider codec made of a client's new session (:meth:`Codec.configure`):
    ``messages`` to send upstream now; ``redo`` to open a new upstream connection whose
    :meth:`Codec.start` carries the new session; ``refused`` the fields it could not change
    (the codec's :attr:`Codec.params` keep their old values)."""

    messages: list[str | bytes] = field(default_factory=list)
    redo: bool = False
    refused: tuple[str, ...] = ()


CodecEvent = Union[
    Ready, AudioOut, AudioDone, ClearAudio, Fatal, Malformed, Reconnect, Transcript, ToolCall,
    Usage, Error, SpeechStarted, SpeechStopped,
]

#: What decoding an upstream message may raise besides ``msgspec.DecodeError`` (of which
#: ``ValidationError`` is a subclass): bytes that are not UTF-8, and nesting deeper than
#: msgspec's recursion limit (a hostile upstream can send 100,000 nested arrays in a field
#: the codec does not even read; msgspec still has to walk it to skip it).
UNREADABLE = (UnicodeDecodeError, RecursionError)


@dataclass(slots=True)
class CodecStats:
    """Counters a codec keeps for metrics and tests (never fatal on their own)."""

    unknown_events: int = 0
    malformed_events: int = 0
    events: int = 0
    #: Per event type the codec knows (bounded: unknown types only add to ``unknown_events``).
    counts: dict[str, int] = field(default_factory=dict)


class Codec(abc.ABC):
    """One provider session's translation state. One instance per bridged session."""

    #: Registry key, equal to ``SessionParams.provider``.
    provider: ClassVar[str]

    def __init__(self, params: SessionParams) -> None:
        self.params = params
        self.stats = CodecStats()

    def _malformed(self, reason: str, out: list[CodecEvent] | None = None) -> list[CodecEvent]:
        """Count an unreadable message (or part of one) in :attr:`stats` and report it as a
        :class:`Malformed` event appended to ``out`` (a new list if None), unless ``out``
        already holds one: one event per message, however many of its parts were bad."""
        self.stats.malformed_events += 1
        if out is None:
            return [Malformed(reason)]
        if not any(type(event) is Malformed for event in out):
            out.append(Malformed(reason))
        return out

    @property
    @abc.abstractmethod
    def input_rate(self) -> int:
        """The PCM rate the provider wants client audio at."""

    #: The provider's own voice names (lower case), or None where any name is passed on.
    #: A voice of another provider asked for after the mint keeps the session's voice.
    VOICES: ClassVar[frozenset[str] | None] = None

    def _with_own_voice(self, params: SessionParams) -> SessionParams:
        """``params`` with this codec's rates, and its voice unless the new one is ours."""
        voice = params.voice
        if voice != self.params.voice and self.VOICES is not None and (voice or "").lower() not in self.VOICES:
            voice = self.params.voice
        return replace(params, voice=voice, input_sample_rate=self.params.input_sample_rate,
                       output_sample_rate=self.params.output_sample_rate)

    def configure(self, params: SessionParams) -> Configured:
        """The client asked for a new session (instructions, voice, tools, turn detection)
        mid-way: apply what the provider can. This default changes nothing and refuses every
        field that differs; codecs whose provider takes changes override it."""
        return Configured(refused=changed_fields(self.params, self._with_own_voice(params)))

    @abc.abstractmethod
    def start(self) -> list[Outbound]:
        """Messages to send right after the upstream socket opens (session config)."""

    @abc.abstractmethod
    def audio(self, pcm: bytes) -> list[Outbound]:
        """Client audio, already at :attr:`input_rate` and of even length."""

    @abc.abstractmethod
    def commit(self) -> list[Outbound]:
        """The user's turn ended: ask the provider for a response."""

    def respond(self) -> list[Outbound]:
        """Ask for a response over what the provider has, committing no audio (hands-free: its
        detector owns the user's audio). Where a response cannot be asked for without a
        commit, this is :meth:`commit`."""
        return self.commit()

    @abc.abstractmethod
    def text(self, text: str, respond: bool = True) -> list[Outbound]:
        """A typed user turn (protocol v2): add it as the user's words and have the model
        answer; with ``respond`` False only add it (the next :meth:`commit` asks for the answer)."""

    @abc.abstractmethod
    def interrupt(self, played_ms: int) -> list[Outbound]:
        """Cancel the in-flight reply; ``played_ms`` of its audio reached the client."""

    def barge_in(self, played_ms: int) -> list[Outbound]:
        """The provider heard the user start speaking (after :class:`SpeechStarted`): cut the
        reply that was under way, as :meth:`interrupt` does, but not a reply the client asked
        for after the speech began."""
        return self.interrupt(played_ms)

    @abc.abstractmethod
    def tool_result(self, call_id: str, output: str) -> list[Outbound]:
        """Return a tool's output to the model and let it continue."""

    @abc.abstractmethod
    def receive(self, data: str | bytes) -> list[CodecEvent]:
        """Translate one upstream message. Never raises: unreadable input is counted in
        :attr:`stats`, skipped and reported as :class:`Malformed`; an unusable upstream
        yields :class:`Fatal`."""

    def upstream_closed(self, code: int | None, reason: str) -> Fatal:
        """The upstream socket closed (or broke) while the session was live: how to end.
        Providers that signal errors only as close codes (Gemini) override this."""
        detail = f" (code {code}{': ' + reason if reason else ''})" if code is not None else ""
        return Fatal(CloseCode.PROVIDER_FAILED, ErrorCode.PROVIDER_UNAVAILABLE, f"provider closed the connection{detail}")

    def drain_outbound(self) -> list[Outbound]:
        """Messages the codec wants sent upstream as a consequence of received events
        (e.g. a ``response.create`` deferred until the active response is done). The
        bridge calls this after every :meth:`receive`."""
        return []

