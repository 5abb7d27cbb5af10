"""xAI Grok Voice Agent codec (providers.md section 4).

xAI follows OpenAI's Realtime events closely, so this codec extends :class:`OpenAICodec`
and overrides exactly where xAI differs. Each difference is explicit below and tested in
``tests/test_xai.py``:

- **Session shape.** ``voice`` and ``turn_detection`` sit at the top level of ``session``
  (as in OpenAI's beta); ``audio.*.format`` and ``tools`` follow GA; there is no
  ``session.type`` and no ``model`` (the model is in the URL).
- **Rates.** xAI takes PCM16 at 8-48 kHz per direction, so the session asks for the
  client's own ``inputSampleRate`` and ``outputSampleRate``: audio crosses the bridge with
  no resampling at all for xAI.
- **Turn detection.** ``server`` turns are ``server_vad`` with ``threshold``,
  ``silence_duration_ms`` and ``prefix_padding_ms`` (providers.md 4.2 lists these; xAI
  documents no ``create_response``/``interrupt_response``: its VAD answers by itself, and
  the bridge cancels and truncates on barge-in as for OpenAI). xAI has no semantic VAD
  (the mint refuses it).
- **Temperature** is not part of xAI's documented session; it is not sent.
- **User transcripts** arrive as ``conversation.item.input_audio_transcription.updated``
  with the *cumulative* text, which may revise earlier words. Only words followed by a
  space are sent as deltas (the trailing word is still being recognised, and most
  revisions touch it). If a word already sent is revised, no further deltas are sent for
  that item; the ``final`` transcript (from ``.completed``) always carries the whole,
  corrected text, and is preceded by a delta with the held-back tail. So the user deltas
  join to the final text, as for the other providers, except after such a deep revision
  (then they join to a prefix of an earlier reading, and the final is authoritative).
- **Duplicates.** ``response.text.delta``/``.done`` repeat ``response.output_text.*``:
  only the latter are used.
- **Usage** is ``{total_tokens, input_tokens, output_tokens}`` in ``response.usage`` or at
  the top level of ``response.done``, with no audio breakdown (xAI bills per minute):
  ``inputAudioTokens``/``outputAudioTokens`` carry ``input_tokens``/``output_tokens``.
- ``ping`` keep-alives are ignored; the error "Cancellation failed: no active response
  found" is the same benign race as OpenAI's ``response_cancel_not_active``, and errors
  about truncation are benign too (xAI refuses some ``conversation.item.truncate`` after a
  barge-in; the reply is cancelled anyway; pipecat treats "truncat" messages the same way).
- **Partial ``.completed``.** ``...input_audio_transcription.completed`` may come more than
  once per item, with ``status: "in_progress"`` on all but the last: those are read as
  ``.updated`` (cumulative text), so there is one final per utterance.
- **Abandoned response.** A response cancelled before any of its audio may never get a
  ``response.done`` (LiveKit's xAI plugin handles this case explicitly). The codec then
  waited forever to send the next ``response.create`` while pings kept the watchdog quiet.
  Now the next ``commit`` or ``tool_result`` treats such a response as over and asks for a
  new one at once; a ``response.done`` that still comes for it later is dropped.
"""

from __future__ import annotations

from typing import Any

from ..frames import Transcript, Usage
from ..params import SessionParams, hands_free, turn_detection
from .base import CodecEvent, Configured, Outbound, changed_fields
from .openai import OpenAICodec
from .openai_setup import function_tool, vad_fields
from .openai_wire import Err, Event, to_json

DEFAULT_VOICE = "eve"
#: docs.x.ai Voice Agent API, "Voice Options" (any case).
XAI_VOICES = frozenset({"eve", "ara", "rex", "sal", "leo"})
TRANSCRIPTION_MODEL = "grok-transcribe"
#: xAI's wording of the cancel-with-nothing-active race (no stable code is documented).
BENIGN_MESSAGES = ("no active response", "truncat")
#: Items whose cumulative transcript we follow; bounded like the codec's other memories.
MAX_TRACKED_ITEMS = 256


def xai_turn_detection(params: SessionParams) -> dict[str, Any] | None:
    turn = turn_detection(params)
    if turn.type == "server":
        return {"type": "server_vad", **vad_fields(turn)}
    return None  # manual (semantic is refused at mint)


def xai_session_config(params: SessionParams) -> dict[str, Any]:
    session: dict[str, Any] = {
        "voice": params.voice or DEFAULT_VOICE,
        "turn_detection": xai_turn_detection(params),
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": params.input_sample_rate},
                "transcription": {"model": TRANSCRIPTION_MODEL},
            },
            "output": {"format": {"type": "audio/pcm", "rate": params.output_sample_rate}},
        },
    }
    if params.system_prompt:
        session["instructions"] = params.system_prompt
    if params.tools:
        session["tools"] = [function_tool(t) for t in params.tools]
    return session


class XAICodec(OpenAICodec):
    provider = "xai"

    def __init__(self, params: SessionParams) -> None:
        super().__init__(params)
        self._in_rate = params.input_sample_rate
        self._out_rate = params.output_sample_rate
        self._user_text: dict[str | None, str | None] = {}  # item -> text sent as deltas (None: revised)
        self._audio_in_response = False  # audio arrived since the active response was asked for
        self._cancelled_silent = False  # cancelled before any audio: it may never be done
        self._abandoned: set[str | None] = set()  # responses given up on: a late done is dropped
        self._handlers.update({
            "conversation.item.input_audio_transcription.updated": self._on_user_updated,
            "response.text.delta": self._ignore,
            "response.text.done": self._ignore,
            "ping": self._ignore,
        })

    def start(self) -> list[Outbound]:
        return [to_json({"type": "session.update", "session": xai_session_config(self.params)})]

    VOICES = XAI_VOICES

    def configure(self, params: SessionParams) -> Configured:
        """xAI's ``session.update`` is OpenAI's client event (its docs list it among the client
        events with no restriction to the start; pipecat sends it after ``conversation.created``),
        so a new session is sent as one, at any time; the simulator takes it likewise. Not
        verified against the live service mid-conversation. The update names every field, so
        instructions or tools the client removed are removed."""
        params = self._with_own_voice(params)
        if not changed_fields(self.params, params):
            return Configured()
        self.params = params
        self._hands_free = hands_free(params)
        session = xai_session_config(params)
        session.setdefault("instructions", "")
        session.setdefault("tools", [])
        return Configured([to_json({"type": "session.update", "session": session})])

    def interrupt(self, played_ms: int) -> list[Outbound]:
        if self._response.active and not self._audio_in_response:
            self._cancelled_silent = True
        return super().interrupt(played_ms)

    def _create_response(self) -> list[Outbound]:
        if self._response.active and self._cancelled_silent:  # abandoned: never done
            if len(self._abandoned) >= MAX_TRACKED_ITEMS:
                self._abandoned.clear()
            self._abandoned.add(self._response.id)
            self.stats.counts["abandoned_responses"] = self.stats.counts.get("abandoned_responses", 0) + 1
            self._response.active = False
            self._response.deferred = False
        out = super()._create_response()
        if out:  # asked for now (not deferred): a new response begins
            self._cancelled_silent = self._audio_in_response = False
        return out

    def _on_response_created(self, ev: Event) -> list[CodecEvent]:
        self._abandoned.discard(None)  # the id-less abandoned one, if any, is not this one
        return super()._on_response_created(ev)

    def _on_audio_delta(self, ev: Event) -> list[CodecEvent]:
        self._audio_in_response = True
        return super()._on_audio_delta(ev)

    def _on_response_done(self, ev: Event) -> list[CodecEvent]:
        rid = ev.response.id if ev.response is not None else None
        if rid is not None and rid in self._abandoned:
            self._abandoned.discard(rid)
            return []  # the abandoned response, done after all: the client moved on
        self._cancelled_silent = self._audio_in_response = False
        return super()._on_response_done(ev)

    @staticmethod
    def _ignore(ev: Event) -> list[CodecEvent]:
        return []

    def _on_user_updated(self, ev: Event) -> list[CodecEvent]:
        text = ev.transcript
        if text is None:
            return self._malformed(f"{ev.type} without transcript")
        sent = self._user_text
        if ev.item_id not in sent and len(sent) >= MAX_TRACKED_ITEMS:
            sent.clear()
        emitted = sent.get(ev.item_id, "")
        if emitted is None:  # an already-sent word was revised: the final will tell
            return []
        if not text.startswith(emitted):
            sent[ev.item_id] = None
            return []
        # The trailing word is still being recognised (and most revisions touch it): only
        # words followed by a space are sent.
        stable = text[: text.rfind(" ") + 1]
        if len(stable) <= len(emitted):
            return []
        sent[ev.item_id] = stable
        return [Transcript("user", stable[len(emitted):], False)]

    def _on_user_done(self, ev: Event) -> list[CodecEvent]:
        if ev.status == "in_progress":  # a partial: more text for this item will follow
            return self._on_user_updated(ev)
        emitted = self._user_text.pop(ev.item_id, "")
        final = super()._on_user_done(ev)
        if ev.transcript is None:
            return final  # Malformed
        if emitted is not None and ev.transcript.startswith(emitted) and ev.transcript != emitted:
            # the held-back tail, so the deltas join to the final text
            return [Transcript("user", ev.transcript[len(emitted):], False), *final]
        return final

    def _usage(self, ev: Event) -> Usage | None:
        usage = ev.response.usage if ev.response is not None and ev.response.usage else ev.usage
        if usage is None:
            return None
        return Usage(usage.input_tokens or 0, usage.output_tokens or 0)

    def _on_error(self, ev: Event) -> list[CodecEvent]:
        message = (ev.error or Err()).message or ""
        if any(m in message.lower() for m in BENIGN_MESSAGES):
            self.stats.counts["benign_error"] = self.stats.counts.get("benign_error", 0) + 1
            return []
        return super()._on_error(ev)
