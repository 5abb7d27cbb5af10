"""What a Gemini model turn accumulates until it ends: its transcripts and its usage.

Gemini streams both in pieces that the protocol (docs/protocol.md) hands on whole at the end
of a turn: transcription fragments are deltas whose finals carry the whole text
(:class:`Transcripts`), and ``usageMetadata`` may come several times per turn, or between
turns, while every response ends with exactly one ``usage`` frame (:class:`TurnUsage`).
"""

from __future__ import annotations

from ..frames import Transcript, Usage
from .base import CodecEvent
from .google_wire import TokenCount, Transcription, UsageMetadata


class Transcripts:
    """Gemini's transcription fragments joined into the finals the protocol promises.

    Each fragment is a delta. The user's final comes once, with the whole text, at
    ``inputTranscription.finished``, at ``turnComplete``, or (text that came even later)
    before the first message after the client's next turn starts; the assistant's at
    ``turnComplete``."""

    __slots__ = ("assistant", "new_turn", "user", "user_pending")

    def __init__(self) -> None:
        self.user: list[str] = []
        self.user_pending = False  # user fragments not yet closed by a final
        self.new_turn = False  # the client started a turn: the previous user text is complete
        self.assistant: list[str] = []

    def message_arrived(self, out: list[CodecEvent]) -> None:
        """Any message after the client started a new turn: transcription of the previous
        turn is over by now."""
        if self.new_turn:
            self.new_turn = False
            self.close_user(out)

    def heard(self, heard: Transcription, out: list[CodecEvent]) -> None:
        if heard.text:
            self.user.append(heard.text)
            self.user_pending = True
            out.append(Transcript("user", heard.text, False))
        if heard.finished:  # Gemini 3.1 marks it; 2.5 never does (js-genai#1429)
            self.close_user(out)

    def close_user(self, out: list[CodecEvent]) -> None:
        if self.user_pending:
            self.user_pending = False
            out.append(Transcript("user", "".join(self.user), True))
            self.user = []

    def said(self, text: str) -> Transcript:
        self.assistant.append(text)
        return Transcript("assistant", text, False)

    def close_assistant(self, out: list[CodecEvent]) -> None:
        if self.assistant:
            out.append(Transcript("assistant", "".join(self.assistant), True))
            self.assistant = []


class TurnUsage:
    """The model turns owed a :class:`Usage` frame, and the audio tokens not yet carried by one.

    PROTOCOL v2: every response ends with exactly one usage frame (zeros if Gemini reported
    none); usage reported outside a turn is carried by the next one. Turns are counted, not
    flagged: a turn asked for while another is still ending (two typed turns in a row) gets
    its own end and its own usage."""

    __slots__ = ("input_audio", "output_audio", "owed")

    def __init__(self) -> None:
        self.owed = 0  # model turns asked for (or begun) and not yet ended
        self.input_audio = 0  # audio tokens reported and not yet carried by a Usage frame
        self.output_audio = 0

    def ask(self) -> None:
        """A model turn was asked for (a commit, a text, a tool result, the detector)."""
        self.owed += 1

    def began(self) -> None:
        """The model produced output: a turn, even if nobody asked for one."""
        self.owed = self.owed or 1

    def report(self, usage: UsageMetadata) -> None:
        """``usageMetadata``: only the ``AUDIO`` entries count."""
        self.input_audio += _audio_tokens(usage.promptTokensDetails)
        self.output_audio += _audio_tokens(usage.responseTokensDetails)

    def ended(self, out: list[CodecEvent]) -> None:
        """A model turn ended: its one :class:`Usage`, if a turn was owed."""
        if self.owed:
            self.owed -= 1
            out.append(Usage(self.input_audio, self.output_audio))
            self.input_audio = self.output_audio = 0


def _audio_tokens(details: list[TokenCount] | None) -> int:
    return sum(d.tokenCount or 0 for d in details or () if d.modality == "AUDIO")
