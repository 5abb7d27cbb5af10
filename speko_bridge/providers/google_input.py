"""User input the Gemini codec holds back instead of sending at once, and when a client's new
session can still become a new ``setup``. Split from ``google.py``: both decide *when* input
reaches Gemini, not how Gemini's events read.

- **Text items** (OpenAI's ``conversation.item.create`` on the compatible endpoint) are the
  user's words, not a request for an answer: Gemini answers a complete ``clientContent`` turn
  at once, so they wait for the client's ``response.create`` (the codec's ``commit``), and go
  up as one complete turn then, or as an incomplete one before the user's next audio.
- **Audio during a reply, manual turns.** An ``activityStart`` interrupts Gemini
  (``START_OF_ACTIVITY_INTERRUPTS``), so opening the next activity for audio that arrives
  while the model answers would cut every reply of a client that streams its microphone
  continuously (Mastra does; OpenAI buffers such audio for the next turn and never cuts the
  reply for it). That audio is held, the latest :data:`MAX_HELD_AUDIO_MS` of it, and opens
  the user's next activity when the reply ends (``turnComplete``), or at once if the client
  commits or interrupts meanwhile (both mean the user took the turn).
- **A new session** (``Codec.configure``): Gemini takes its whole config in ``setup``, once
  per connection. Until client input went upstream a new connection with a new ``setup``
  loses nothing (there is no conversation yet); after that a change is refused: a new setup
  without the resumption handle would forget the conversation, and Gemini documents no
  config change on resumption (ai.google.dev Live API "Session management" describes a
  handle as restoring the session; nothing says a new config applies to it).
"""

from __future__ import annotations

from collections import deque

from ..params import SessionParams, hands_free
from .base import Configured, Outbound, changed_fields
from .google_setup import VOICES as GEMINI_VOICES
from .google_wire import GEMINI_INPUT_RATE, to_json

#: Text items kept for the client's response request: the latest (a client that adds items
#: and never asks for an answer must not grow the session's memory).
MAX_HELD_TEXTS = 64
#: Audio kept while the model answers in manual turns: 5 s, like the bridge's own hold while
#: the provider is not ready (session/upstream.py); older audio is dropped (and counted).
MAX_HELD_AUDIO_MS = 5000
_MAX_HELD_AUDIO_BYTES = MAX_HELD_AUDIO_MS * 2 * GEMINI_INPUT_RATE // 1000


class HeldInput:
    """Text items and audio not sent yet (module docstring: why)."""

    __slots__ = ("_audio", "_audio_bytes", "_texts", "dropped_bytes")

    def __init__(self) -> None:
        self._texts: list[str] = []
        self._audio: deque[tuple[str, int]] = deque()  # (realtimeInput message, PCM bytes)
        self._audio_bytes = 0
        self.dropped_bytes = 0

    @property
    def texts(self) -> bool:
        return bool(self._texts)

    def text(self, text: str) -> None:
        self._texts = [*self._texts[-MAX_HELD_TEXTS + 1:], text]

    def texts_message(self, complete: bool) -> list[Outbound]:
        """The held texts as one ``clientContent`` (``turnComplete`` when the client asked for
        the answer and said nothing since), or nothing."""
        if not self._texts:
            return []
        turns = [{"role": "user", "parts": [{"text": t}]} for t in self._texts]
        self._texts = []
        return [to_json({"clientContent": {"turns": turns, "turnComplete": complete}})]

    def audio(self, message: str, size: int) -> None:
        self._audio.append((message, size))
        self._audio_bytes += size
        while self._audio_bytes > _MAX_HELD_AUDIO_BYTES:
            _, old = self._audio.popleft()
            self._audio_bytes -= old
            self.dropped_bytes += old

    def take_audio(self) -> list[Outbound]:
        frames = [message for message, _ in self._audio]
        self._audio.clear()
        self._audio_bytes = 0
        return frames

    def drop_audio(self) -> None:
        """A tool call began: realtime input now would end the session (the gate drops it)."""
        self.dropped_bytes += self._audio_bytes
        self._audio.clear()
        self._audio_bytes = 0


class SetupState:
    """Whether a ``setup`` went out and whether client input followed it."""

    __slots__ = ("sent", "talked")

    def __init__(self) -> None:
        self.sent = False
        self.talked = False

    def change(self, old: SessionParams, new: SessionParams) -> tuple[Configured, bool]:
        """What a new session does (module docstring), and whether the codec takes ``new``."""
        changed = changed_fields(old, new)
        if not changed:
            return Configured(), False
        if self.talked:
            return Configured(refused=changed), False
        return Configured(redo=self.sent), True


class GeminiInput:
    """The part of :class:`~.google.GoogleCodec` that decides when input goes up: typed turns
    and text items, the held audio, a client's new session (module docstring). A mixin: it
    works on the codec's own state (``_held``, ``_setup``, ``_gate``, ``_responding``, ...)."""

    VOICES = frozenset(v.lower() for v in GEMINI_VOICES)

    def configure(self, params: SessionParams) -> Configured:
        """A new ``setup`` on a new connection while nothing was said yet; else refused."""
        params = self._with_own_voice(params)
        done, take = self._setup.change(self.params, params)
        if take:
            self.params = params
            self._hands_free = hands_free(params)
            self._resumption.forget()  # a fresh session: nothing to resume
        return done

    def text(self, text: str, respond: bool = True) -> list[Outbound]:
        """Server turns: ``realtimeInput.text``, real-time input like speech (it interrupts a
        reply, and the model answers it). Manual turns: a complete ``clientContent`` user
        turn (``turnComplete``), which the model answers with no activity signals (google-genai
        ``LiveClientRealtimeInput.text`` / ``LiveClientContent``). Without ``respond`` (a text
        item) held for the client's response request. Dropped, like audio, while a tool call
        waits for its result."""
        if self._gate.closed:
            self._count("texts_dropped_during_tool_call", 1)
            return []
        self._setup.talked = True
        if not respond:
            self._held.text(text)
            return []
        self._responding = True
        self._turn_usage.ask()
        if self._hands_free:
            return [to_json({"realtimeInput": {"text": text}})]
        turn = {"role": "user", "parts": [{"text": text}]}
        return [to_json({"clientContent": {"turns": [turn], "turnComplete": True}})]

    def _release_audio(self) -> list[Outbound]:
        """Audio held while the model answered, as the user's next activity (nothing if none)."""
        frames = self._held.take_audio()
        return self._held.texts_message(False) + self._open_activity() + frames if frames else []

    def drain_outbound(self) -> list[Outbound]:
        out, self._outbound = self._outbound, []
        return out
