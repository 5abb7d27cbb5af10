"""A fake xAI Grok Voice Agent server (providers.md section 4) over a real WebSocket.

It is the OpenAI simulator speaking xAI's dialect; the differences (each from
providers.md 4, and issue 19 for the real-service behaviours marked *):

- First messages* ``session.created`` (fal.ai's xAI proxy page: "xAI's session.created
  reaches clients that connect and wait"), ``conversation.created``, then a ``ping``, and
  a ``ping`` every ``ping_interval`` seconds after (keep-alives that also keep a bridge's
  read watchdog quiet, which is why an abandoned response hung sessions silently).
- ``session.update``: ``voice`` and ``turn_detection`` at the top level of ``session``;
  ``session.type`` "realtime" accepted*; voices Eve, Ara, Rex, Sal, Leo in any case
  (docs.x.ai Voice Agent API, "Voice Options": five voices; the issue's "larger
  catalogue" is not in the docs); ``audio.*.format.rate`` any of 8000-48000 per direction. Anything
  else is a violation (recorded, and answered with an OpenAI-shaped error). The echo
  sends the voice back as ``xai_<voice>`` and a null turn detection as ``{"type": null}``.
- User transcription as cumulative ``...input_audio_transcription.updated`` events that
  revise one earlier word on the way (deterministic: the first update says "I spoak",
  the next corrects it to "I spoke"), a partial ``.completed`` with ``status:
  "in_progress"`` half way*, then the final ``.completed``.
- A response cancelled before its first audio is dropped without ``response.done``*
  (LiveKit's xAI plugin handles this abandoned response explicitly); with
  ``first_audio_delay`` a cancel can land there.
- ``conversation.item.truncate`` is answered with an ``error`` whose message mentions
  truncation* (pipecat treats such xAI errors as harmless; the exact wording is ours).
- No ``rate_limits.updated`` and no ``conversation.item.done``.
- Usage ``{total_tokens, input_tokens, output_tokens}`` in ``response.usage``.
- Server VAD: ``speech_started``/``speech_stopped`` carry only ``item_id`` (providers.md 4.3,
  no ``*_ms`` fields), and a speech start does not cut a response by itself (xAI documents
  no ``interrupt_response``: the client cancels).
- Audio at the rates the session asked for. Other rules as the OpenAI simulator.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from .openai import OpenAISimConfig, OpenAISimulator, _Conn, client_event_checker

XAI_RATES = frozenset({8000, 16000, 22050, 24000, 32000, 44100, 48000})
SESSION_KEYS = frozenset({"type", "instructions", "voice", "turn_detection", "audio", "tools", "tool_choice",
                          "reasoning", "resumption", "replace"})
AUDIO_INPUT_KEYS = frozenset({"format", "transcription", "transport"})
AUDIO_OUTPUT_KEYS = frozenset({"format", "speed", "transport"})
VOICES = frozenset({"eve", "ara", "rex", "sal", "leo"})


@dataclass
class XAISimConfig(OpenAISimConfig):
    api_key: str | None = "xai-sim-key"
    #: Seconds between ``ping`` keep-alives after the first (the real service keeps pinging;
    #: the interval is not documented); None: only the one after connect.
    ping_interval: float | None = 5.0


def _session_problems(session: Any) -> list[str]:
    if not isinstance(session, dict):
        return ["session must be an object"]
    problems = [f"session.{k} is not an xAI session field" for k in session if k not in SESSION_KEYS]
    if session.get("type", "realtime") != "realtime":
        problems.append(f"session.type {session.get('type')!r} is not supported")
    voice = session.get("voice")
    if voice is not None and (not isinstance(voice, str) or voice.lower() not in VOICES):
        problems.append(f"session.voice {voice!r} is not an xAI voice")
    audio = session.get("audio") or {}
    for side, allowed in (("input", AUDIO_INPUT_KEYS), ("output", AUDIO_OUTPUT_KEYS)):
        part = audio.get(side) or {}
        problems += [f"session.audio.{side}.{k} is not an xAI field" for k in part if k not in allowed]
        fmt = part.get("format")
        if fmt is not None and (fmt.get("type") != "audio/pcm" or fmt.get("rate") not in XAI_RATES):
            problems.append(f"session.audio.{side}.format {fmt!r} is not supported")
    for i, tool in enumerate(session.get("tools") or []):
        if tool.get("type") == "function" and not tool.get("name"):
            problems.append(f"session.tools[{i}] needs a name")
    return problems


def xai_event_checker():
    openai_check = client_event_checker()

    def check(event: dict) -> str | None:
        if event.get("type") == "session.update":
            problems = _session_problems(event.get("session"))
            extra = [k for k in event if k not in ("type", "session", "event_id")]
            problems += [f"unknown field {k}" for k in extra]
            return "session.update: " + "; ".join(problems) if problems else None
        return openai_check(event)  # providers.md 4.2: identical to OpenAI

    return check


class XAISimulator(OpenAISimulator):
    SKIP_EVENTS = frozenset({"rate_limits.updated", "conversation.item.done"})
    VAD_MS_FIELDS = False
    INTERRUPT_BY_DEFAULT = False

    def __init__(self, config: XAISimConfig | None = None) -> None:
        super().__init__(config or XAISimConfig())
        self.abandoned = 0  # responses cancelled before audio and never done
        self._pingers: dict[asyncio.Task, list[asyncio.Task]] = {}  # handler -> its ping task

    def make_checker(self):
        return xai_event_checker()

    def _new_conn(self, model: str) -> _Conn:
        conn = _Conn(model)
        conn.session = {
            "id": f"sess-{int(time.time() * 1000) % 10**9}",
            "object": "realtime.session",
            "model": model,
            "voice": "eve",
            "instructions": "",
            "turn_detection": {"type": "server_vad"},
            "tools": [],
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}, "transcription": None},
                      "output": {"format": {"type": "audio/pcm", "rate": 24000}}},
        }
        return conn

    async def _handle(self, request):
        pinger = asyncio.current_task()
        self._pingers[pinger] = []
        try:
            return await super()._handle(request)
        finally:
            for task in self._pingers.pop(pinger):
                task.cancel()

    async def _ping(self, ws, conn: _Conn, interval: float) -> None:
        try:
            while not ws.closed:
                await asyncio.sleep(interval)
                await self._send(ws, conn, {"type": "ping", "timestamp": int(time.time() * 1000)})
        except (ConnectionError, RuntimeError):
            pass  # the socket went away

    async def _greet(self, ws, conn: _Conn) -> None:
        if self.config.ping_interval is not None:
            self._pingers[asyncio.current_task()].append(
                asyncio.create_task(self._ping(ws, conn, self.config.ping_interval)))
        await self._send(ws, conn, {"type": "session.created", "session": conn.session})
        await self._send(ws, conn, {"type": "conversation.created",
                                    "conversation": {"id": "conv_1", "object": "realtime.conversation"}})
        await self._send(ws, conn, {"type": "ping", "timestamp": int(time.time() * 1000)})

    async def _send(self, ws, conn: _Conn, event: dict) -> None:
        if event["type"] == "session.updated":
            shown = dict(event["session"])
            shown["voice"] = "xai_" + str(shown.get("voice", "eve")).lower()
            if shown.get("turn_detection") is None:
                shown["turn_detection"] = {"type": None}
            event = {"type": "session.updated", "session": shown}
        await super()._send(ws, conn, event)

    def _turn_detection(self, conn: _Conn) -> dict | None:
        td = conn.session.get("turn_detection")  # top level in xAI's session
        return td if isinstance(td, dict) and td.get("type") == "server_vad" else None

    def _transcribing(self, conn: _Conn) -> bool:
        return bool(conn.session["audio"]["input"].get("transcription"))

    async def _transcribe(self, ws, conn: _Conn, item_id: str, text: str, seconds: float) -> None:
        words = text.split(" ")
        drafts = [" ".join(words[:1] + ["spoak"])] + [" ".join(words[:n]) for n in range(2, len(words) + 1)]
        for i, draft in enumerate(drafts):
            await self._send(ws, conn, {"type": "conversation.item.input_audio_transcription.updated",
                                        "item_id": item_id, "content_index": 0, "transcript": draft})
            if i == len(drafts) // 2:  # a partial "completed" (issue 19, item 9)
                await self._send(ws, conn, {"type": "conversation.item.input_audio_transcription.completed",
                                            "item_id": item_id, "transcript": draft, "status": "in_progress"})
        await self._send(ws, conn, {"type": "conversation.item.input_audio_transcription.completed",
                                    "item_id": item_id, "transcript": text, "status": "completed"})

    async def _on_response_cancel(self, ws, conn: _Conn, event: dict) -> None:
        if conn.response is not None and not conn.response.done() and conn.response_audio_ms == 0:
            conn.response.cancel()  # abandoned: no response.done will ever come
            await asyncio.gather(conn.response, return_exceptions=True)
            self.abandoned += 1
            return
        await super()._on_response_cancel(ws, conn, event)

    async def _on_conversation_item_truncate(self, ws, conn: _Conn, event: dict) -> None:
        await self._error(ws, conn, "invalid_request_error", None,
                          "Failed to truncate conversation item: truncation is not available for this item.",
                          None, event.get("event_id"))

    def _usage(self, in_audio: int, out_audio: int, out_text: int) -> dict:
        return {"total_tokens": 10 + in_audio + out_audio + out_text, "input_tokens": 10 + in_audio,
                "output_tokens": out_audio + out_text}
