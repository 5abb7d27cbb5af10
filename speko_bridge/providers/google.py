"""Google Gemini Live codec (BidiGenerateContent, providers.md section 3).

Sans-IO. Gemini differs from OpenAI in shape, not in what the client sees:

- **Setup first.** ``start()`` sends one ``setup``; nothing else goes upstream before
  ``setupComplete`` (the bridge holds client messages until :class:`Ready`).
- **Turns** are bracketed by ``activityStart``/``activityEnd`` (automatic activity
  detection is off: the client's ``commit`` ends a turn, and Gemini answers after
  ``activityEnd``). A ``commit`` with no audio sends an empty activity. Audio that arrives
  while the model answers waits for the reply's end (``google_input.py``: an activity would
  cut it), as do text items for the client's response request.
- **Interrupt** starts a new activity, which interrupts Gemini; the codec drops the rest
  of the interrupted reply's audio until Gemini confirms with ``interrupted`` or
  ``turnComplete`` (Gemini has no item ids to tell replies apart).
- **Audio** goes up at 16 kHz (``audio/pcm;rate=16000``); the reply's rate is read from
  each ``inlineData.mimeType`` (bare ``audio/pcm`` means 24 kHz), never assumed.
- **Transcripts** are fragments: each is a delta; the ``final`` assistant transcript (the
  whole text) comes at ``turnComplete``. The user's final comes once, with the whole text,
  at ``inputTranscription.finished`` (Gemini 3.1 sets it) or ``turnComplete``, or, if the
  text arrived even later, before the first message after the client's next turn starts:
  input transcription is not ordered against the reply (it often arrives after it starts).
- **Tool calls**: ``args`` (an object) is passed through as JSON text. A call without an
  ``id`` gets ``call_<n>``. ``tool_result`` sends ``toolResponse.functionResponses`` with
  the call's id and remembered name; an ``output`` that is a JSON object goes as the
  ``response`` object, anything else as ``{"output": <text>}``. While a call waits for its
  result, client audio, commits and texts are **dropped** (realtime input then makes Gemini
  close the session with 1008): :class:`~.google_gate.ToolCallGate`, which reopens at the
  result, at ``toolCallCancellation``, at an ``interrupt`` or after ``TOOL_WAIT_MAX_MS`` of
  user audio (the last two answer the call with an error so Gemini stops waiting).
- **toolCallCancellation** (after an interruption): the cancelled ids are forgotten and a
  later ``tool_result`` for them is not forwarded (Gemini no longer expects it). docs/protocol.md
  has no cancel frame, so the client is not told; it already saw the interruption.
- **Usage** counts the ``AUDIO`` entries of ``promptTokensDetails`` and
  ``responseTokensDetails``. A model turn (ended by ``turnComplete`` or a tool call) ends
  with exactly one :class:`Usage`, zeros if Gemini reported none; usage reported between
  turns is carried by the next one. A ``turnCompleteReason`` other than unspecified or
  ``NEED_MORE_INPUT`` (a rejected turn) becomes an ``error`` frame naming the reason.
- **goAway**: the codec asks the bridge to :class:`Reconnect` at the next point where the
  session can resume without losing anything: at once when the model is idle and the
  latest ``sessionResumptionUpdate`` was resumable, otherwise on the first resumable handle
  after the current turn (a handle issued mid-turn, or while a tool call waits, would
  replay or lose part of it). ``start()`` then sends ``setup`` with that handle. Without
  any handle there is nothing to resume; the connection ends when Gemini closes it.
- **Hands-free turns** (``turnDetection`` ``server``): automatic activity detection on
  (``realtimeInputConfig`` from the mint, see ``google_setup.py``), no activity signals from
  the bridge (a ``commit`` sends ``audioStreamEnd``); speech start/stop come from
  ``voiceActivity`` (or, where Gemini sends none, ``interrupted`` and the model's first
  output), and Gemini cuts its own reply when it hears the user.
- **Errors** arrive only as close codes (:data:`CLOSE_CODES`).
"""

from __future__ import annotations

import binascii
import re

import msgspec

from ..codes import CloseCode, ErrorCode
from ..frames import Error as ErrorFrame
from ..params import SessionParams, hands_free
from .base import (
    UNREADABLE,
    AudioDone,
    AudioOut,
    ClearAudio,
    Codec,
    CodecEvent,
    Fatal,
    Outbound,
    Ready,
    Reconnect,
    SpeechStarted,
    SpeechStopped,
)
from .google_gate import TOOL_OUTPUT_KEY, TOOL_WAIT_MAX_MS, ToolCallGate  # noqa: F401 (re-exported)
from .google_input import GeminiInput, HeldInput, SetupState
from .google_setup import DEFAULT_VOICE, gemini_schema, gemini_setup  # noqa: F401 (re-exported)
from .google_turn import Transcripts, TurnUsage
from .google_wire import (
    ACTIVITY_END,
    ACTIVITY_START,
    AUDIO_HEAD,
    AUDIO_TAIL,
    GEMINI_INPUT_RATE,
    STREAM_END,
    Message,
    ServerContent,
    decoder,
    to_json,
)
from .google_wire import Resumption as WireResumption
from .google_wire import ToolCall as WireToolCall

#: Gemini's output rate when the mimeType does not say (providers.md 3.4).
GEMINI_DEFAULT_OUTPUT_RATE = 24000
#: ``turnCompleteReason`` values that are not a refusal (google-genai ``TurnCompleteReason``).
BENIGN_TURN_REASONS = frozenset({"TURN_COMPLETE_REASON_UNSPECIFIED", "NEED_MORE_INPUT"})

#: Gemini's own close code (standard WebSocket codes, not ours) -> (bridge close code, error
#: code). 1007: bad key or invalid setup; 1008: unknown model or policy; 1011: server error.
#: Anything else: provider went away.
CLOSE_CODES: dict[int, tuple[CloseCode, ErrorCode]] = {
    1007: (CloseCode.PROVIDER_REFUSED, ErrorCode.PROVIDER_ERROR),
    1008: (CloseCode.PROVIDER_REFUSED, ErrorCode.PROVIDER_ERROR),
    1011: (CloseCode.PROVIDER_FAILED, ErrorCode.PROVIDER_UNAVAILABLE),
}
_GONE = (CloseCode.PROVIDER_FAILED, ErrorCode.PROVIDER_UNAVAILABLE)
_RATE_RE = re.compile(r"rate=(\d+)")
#: A message with none of the fields :class:`Message` declares (compared whole, in C).
_NOTHING_KNOWN = Message()


def google_url(base_url: str, params: SessionParams) -> str:
    return base_url  # the model travels in setup; the key in a header


def google_headers(api_key: str) -> dict[str, str]:
    return {"x-goog-api-key": api_key}


class Resumption:
    """Where the session can resume after Gemini's ``goAway``: the latest handle, whether it
    is resumable now (one issued mid-turn, or while a tool call waits, would replay or lose
    part of it), and whether Gemini asked this connection to go. The codec asks for a
    :class:`Reconnect` once both hold while the model is idle."""

    __slots__ = ("go_away", "handle", "resumable")

    def __init__(self) -> None:
        self.forget()
        self.go_away = False

    def forget(self) -> None:
        """A new session (the client's new ``setup``): nothing to resume."""
        self.handle: str | None = None
        self.resumable = False

    def update(self, update: WireResumption, idle: bool, out: list[CodecEvent]) -> None:
        """``sessionResumptionUpdate``."""
        self.resumable = bool(update.resumable and update.newHandle)
        if self.resumable:
            self.handle = update.newHandle
            if self.go_away and idle:
                out.append(Reconnect("goAway: resuming at the end of the turn"))

    def going_away(self, time_left: str | None, idle: bool, out: list[CodecEvent]) -> None:
        """``goAway``: resume at once if we can, else at the next resumable handle."""
        self.go_away = True
        if self.resumable and idle:
            out.append(Reconnect(f"goAway (time left {time_left})"))


class GoogleCodec(GeminiInput, Codec):
    """The Gemini Live session as a state machine (module docstring: how Gemini differs), with
    a :class:`Resumption`, :class:`Transcripts`, a :class:`ToolCallGate` and :class:`TurnUsage`."""

    provider = "google"

    def __init__(self, params: SessionParams) -> None:
        super().__init__(params)
        self._resumption = Resumption()
        self._in_activity = False
        self._gated = False  # drop the interrupted reply's audio until Gemini confirms
        self._responding = False
        self._audio_open = False
        self._transcripts = Transcripts()
        self._gate = ToolCallGate()
        self._turn_usage = TurnUsage()
        self._hands_free = hands_free(params)
        self._speaking = False  # server turns: the user is speaking (voiceActivity)
        self._model_output = False  # the model produced output since its last turnComplete
        self._setup = SetupState()
        self._held = HeldInput()  # text items, and audio during a reply (google_input.py)
        self._outbound: list[Outbound] = []

    @property
    def input_rate(self) -> int:
        return GEMINI_INPUT_RATE

    # -------------------------------------------------------------------- client intents

    def start(self) -> list[Outbound]:
        if self._setup.sent:  # a new connection (goAway): the old one's turn state is gone
            self._in_activity = False
            self._responding = self._gated = self._audio_open = False
        # (the first start may come after client input the bridge holds until Ready: its
        # turn state stands, or audio after a commit would open an activity that cuts the reply)
        self._setup.sent = True
        self._resumption.go_away = False
        return [to_json(gemini_setup(self.params, self._resumption.handle))]

    def _open_activity(self) -> list[Outbound]:
        self._in_activity = True
        self._transcripts.new_turn = True
        return [ACTIVITY_START]

    def audio(self, pcm: bytes) -> list[Outbound]:
        out: list[Outbound] = []
        if self._gate.closed:
            self._count("audio_bytes_dropped_during_tool_call", len(pcm))
            if not self._gate.drop_audio(len(pcm)):
                return []
            out = self._abandon_calls(f"no tool result within {TOOL_WAIT_MAX_MS // 1000} s of user speech")
        self._setup.talked = True
        frame = AUDIO_HEAD + binascii.b2a_base64(pcm, newline=False).decode("ascii") + AUDIO_TAIL
        if not self._in_activity and not self._hands_free:
            if self._responding and not out:  # the next turn's audio: held until the reply ends
                self._held.audio(frame, len(pcm))
                return out
            out += self._held.texts_message(False) + self._open_activity()
        return out + [frame]

    def commit(self) -> list[Outbound]:
        if self._gate.closed:  # any realtime input now would end the session (1008)
            self._count("commits_dropped_during_tool_call", 1)
            return []
        self._setup.talked = True
        if self._held.texts and not self._in_activity:  # text items, no audio since: their answer
            self._responding = True
            self._turn_usage.ask()
            return self._held.texts_message(True)
        if self._hands_free:  # the end of the user's audio: Gemini's detector ends the turn
            self._responding = True
            self._turn_usage.ask()
            return [STREAM_END]
        out = [] if self._in_activity else (self._release_audio() or self._open_activity())
        self._in_activity = False
        self._responding = True  # the model answers after activityEnd
        self._turn_usage.ask()
        return out + [ACTIVITY_END]

    def interrupt(self, played_ms: int) -> list[Outbound]:
        out: list[Outbound] = []
        if self._gate.closed:  # the user would rather talk than wait: the call is given up
            out = self._abandon_calls("the user interrupted before the tool result")
        if not self._responding:
            return out
        self._gated = True
        if self._in_activity or self._hands_free:
            return out  # the open activity (or Gemini's own detector) already interrupts
        return out + (self._release_audio() or self._open_activity())

    def barge_in(self, played_ms: int) -> list[Outbound]:
        # Gemini cuts its own reply when it hears speech (START_OF_ACTIVITY_INTERRUPTS); the
        # codec drops the rest of a reply already under way until Gemini confirms. A reply
        # not begun yet (asked by a commit or typed turn meanwhile) is the answer to come.
        return self.interrupt(played_ms) if self._model_output else []

    def tool_result(self, call_id: str, output: str) -> list[Outbound]:
        reply = self._gate.answer(call_id, output)
        if reply is None:  # cancelled or given up on: Gemini no longer expects it
            return []
        self._setup.talked = True
        self._responding = True  # the model continues by itself
        self._turn_usage.ask()
        return [reply]

    def _abandon_calls(self, reason: str) -> list[Outbound]:
        """Answer the pending calls with an error (:meth:`ToolCallGate.abandon`): the model
        continues by itself."""
        reply, calls = self._gate.abandon(reason)
        self._count("tool_calls_abandoned", calls)
        self._responding = True
        self._turn_usage.ask()
        return [reply]

    def _count(self, name: str, n: int) -> None:
        self.stats.counts[name] = self.stats.counts.get(name, 0) + n

    # -------------------------------------------------------------------- server messages

    def receive(self, data: str | bytes) -> list[CodecEvent]:
        try:
            msg = decoder.decode(data)
        except msgspec.DecodeError:  # ValidationError is a DecodeError
            return self._malformed("not a JSON message of the expected shape")
        except UNREADABLE as exc:
            return self._malformed(f"unreadable message: {type(exc).__name__}")
        self.stats.events += 1
        out: list[CodecEvent] = []
        self._transcripts.message_arrived(out)
        ended = False
        if msg.setupComplete is not None:
            out.append(Ready())
        if msg.serverContent is not None:
            ended = self._server_content(msg.serverContent, out)
        if msg.toolCall is not None:
            ended = self._tool_call(msg.toolCall, out) or ended
        if msg.toolCallCancellation is not None:
            self._gate.cancel(msg.toolCallCancellation.ids or ())
        if msg.usageMetadata is not None:
            self._turn_usage.report(msg.usageMetadata)
        if ended:
            self._turn_usage.ended(out)
        if msg.sessionResumptionUpdate is not None:
            self._resumption.update(msg.sessionResumptionUpdate, self._idle, out)
        if msg.voiceActivity is not None:
            kind = msg.voiceActivity.voiceActivityType
            if kind == "ACTIVITY_START":
                self._speech_started(out)
            elif kind == "ACTIVITY_END":
                self._speech_stopped(out)
        if msg.goAway is not None:
            self._resumption.going_away(msg.goAway.timeLeft, self._idle, out)
        if msg == _NOTHING_KNOWN:  # none of the fields the codec reads
            self.stats.unknown_events += 1
        return out

    @property
    def _idle(self) -> bool:
        """No user activity open and no model turn under way: safe to resume elsewhere."""
        return not self._in_activity and not self._responding

    def _speech_started(self, out: list[CodecEvent]) -> None:
        if self._hands_free and not self._speaking:
            self._speaking = True
            out.append(SpeechStarted())

    def _speech_stopped(self, out: list[CodecEvent]) -> None:
        if self._hands_free and self._speaking:
            self._speaking = False
            self._turn_usage.ask()  # the detector ended the user's turn: a reply is owed
            out.append(SpeechStopped())

    def _model_answers(self) -> list[CodecEvent]:
        """The model's reply began: the user's turn is over (where Gemini sent no
        ``ACTIVITY_END``, this is the stop). The user's transcript is NOT final here: input
        transcription is not ordered against the reply."""
        out: list[CodecEvent] = []
        self._speech_stopped(out)
        self._model_output = True
        self._responding = True
        self._turn_usage.began()  # output nobody asked for is a turn too
        return out

    def _server_content(self, content: ServerContent, out: list[CodecEvent]) -> bool:
        """Translate one ``serverContent``; True if it ended the model's turn."""
        if content.inputTranscription is not None:
            self._transcripts.heard(content.inputTranscription, out)
        if content.modelTurn is not None:
            for part in content.modelTurn.parts or ():
                inline = part.inlineData
                if inline is None or inline.data is None:
                    continue
                try:
                    pcm = binascii.a2b_base64(inline.data)
                except (binascii.Error, ValueError):
                    self._malformed("modelTurn audio is not base64", out)
                    continue
                out += self._model_answers()
                if self._gated or not pcm:
                    continue
                self._audio_open = True
                out.append(AudioOut(pcm, _rate(inline.mimeType)))
        if content.outputTranscription is not None and content.outputTranscription.text:
            out += self._model_answers()
            out.append(self._transcripts.said(content.outputTranscription.text))
        if content.interrupted:
            self._speech_started(out)  # Gemini cut its reply because it heard the user
            self._gated = False
            self._audio_open = False
            out.append(ClearAudio())
        if content.generationComplete and self._audio_open:
            self._audio_open = False
            out.append(AudioDone())
        if content.waitingForInput:
            self._count("waiting_for_input", 1)
        if content.interactionStatus == "IN_PROGRESS":
            # more output may follow this turnComplete: it opens (and closes) a turn of its own
            self._count("interaction_in_progress", 1)
        reason = content.turnCompleteReason
        if reason and reason not in BENIGN_TURN_REASONS:
            # e.g. RESPONSE_REJECTED, MALFORMED_FUNCTION_CALL, PROHIBITED_INPUT_CONTENT: the
            # model will not answer this turn; without a word the client would wait forever.
            out.append(ErrorFrame(ErrorCode.PROVIDER_ERROR, f"the model did not answer the turn: {reason}"))
        if not content.turnComplete:
            return False
        if self._audio_open:
            self._audio_open = False
            out.append(AudioDone())
        # The user's final comes here, not at the model's first output: input transcription
        # has no ordering guarantee against the reply and often arrives after it starts.
        self._transcripts.close_user(out)
        self._transcripts.close_assistant(out)
        self._responding = False
        self._gated = False
        self._model_output = False
        self._outbound += self._release_audio()  # the user's next turn, heard meanwhile
        return True

    def _tool_call(self, call: WireToolCall, out: list[CodecEvent]) -> bool:
        self._model_output = True
        self._speech_stopped(out)
        emitted = self._gate.calls(call, out, self._malformed)
        self._held.drop_audio()  # input now would end the session; the gate drops it too
        self._responding = False  # the model waits for the client's tool_result (BLOCKING)
        if emitted:  # the call is the model's answer: it ends this turn
            self._turn_usage.began()
        return emitted

    def upstream_closed(self, code: int | None, reason: str) -> Fatal:
        return gemini_closed(code, reason)


def gemini_closed(code: int | None, reason: str) -> Fatal:
    """How a session ends when Gemini closes the socket: its errors arrive only as close
    codes (:data:`CLOSE_CODES`)."""
    close, error = CLOSE_CODES.get(code or 0, _GONE)
    if code in (1007, 1008) and "api key" in reason.lower():
        error = ErrorCode.PROVIDER_AUTH_FAILED
    detail = f"provider closed the connection (code {code}{': ' + reason if reason else ''})"
    return Fatal(close, error, detail)


def _rate(mime: str | None) -> int:
    if mime:
        match = _RATE_RE.search(mime)
        if match:
            return int(match.group(1))
    return GEMINI_DEFAULT_OUTPUT_RATE

