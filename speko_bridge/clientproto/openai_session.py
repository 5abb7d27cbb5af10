"""OpenAI's ``session.update`` read as the bridge's :class:`SessionParams`, and the session
object written back (``session.created``/``session.updated``): the session half of the
OpenAI-compatible endpoint when the provider behind it is not OpenAI.

What a client may change, and what it becomes (the provider codec then applies it:
``Codec.configure``; see ``openai_compat.py`` for when each provider takes it):

- ``instructions`` -> ``systemPrompt`` (empty: none); at most ``MAX_SYSTEM_PROMPT_BYTES``.
- ``audio.output.voice`` (or the beta's top-level ``voice``) -> ``voice``. A name that is not
  one of the provider's voices (OpenAI's ``alloy`` sent to Gemini) keeps the session's voice:
  SDKs always send one, and a voice is no reason to break a conversation.
- ``tools`` (``type: function``) -> ``tools``; ``tool_choice`` ``auto``, or ``none`` (the
  provider gets no tools); ``required`` and a named function are refused (no provider behind
  the bridge but OpenAI can force a call).
- ``audio.input.turn_detection`` (or the beta's top-level ``turn_detection``): ``null`` ->
  ``manual``; ``server_vad`` -> ``server`` with ``threshold`` -> ``sensitivity`` (the inverse
  of the codecs' ``VAD_THRESHOLDS``), ``prefix_padding_ms`` -> ``prefixMs`` and
  ``silence_duration_ms`` -> ``silenceMs`` (clamped to the mint's bounds); ``semantic_vad`` ->
  ``semantic`` where the provider has it, else ``server`` at the provider's defaults (its
  closest mechanism: a client at its defaults sends semantic_vad and must be answered).
  ``create_response``/``interrupt_response`` ``false`` cannot be honoured (Gemini's and xAI's
  detectors always answer and always cut the reply) and show as ``true``.
- No effect, so ignored: ``model`` (the minted one), ``tracing``, ``include``, ``truncation``,
  ``max_output_tokens`` (and the beta's ``max_response_output_tokens``), ``temperature``,
  transcription and noise-reduction settings, ``audio.output.speed``, a PCM16 24 kHz format.
- Refused (``unsupported_for_provider``, the rest of the update still applies): another audio
  format, ``output_modalities`` without audio, any other field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..params import (
    MAX_PREFIX_MS,
    MAX_SILENCE_MS,
    MAX_SYSTEM_PROMPT_BYTES,
    MAX_TOOLS,
    MIN_SILENCE_MS,
    SEMANTIC_PROVIDERS,
    ManualTurns,
    SemanticTurns,
    ServerTurns,
    SessionParams,
    ToolSpec,
    TurnDetection,
    turn_detection,
)
from ..providers import google_setup, openai_setup, xai
from ..providers.openai_setup import OPENAI_RATE, VAD_THRESHOLDS, function_tool, vad_fields

#: ``session`` fields with no effect through the bridge (see the module docstring).
IGNORED = frozenset({"type", "model", "object", "id", "expires_at", "tracing", "include", "truncation",
                     "max_output_tokens", "max_response_output_tokens", "temperature",
                     "input_audio_transcription", "input_audio_noise_reduction", "input_audio_format",
                     "output_audio_format", "modalities", "prompt"})
#: How each ``SessionParams`` field a provider may refuse is named in OpenAI's session.
OPENAI_NAMES = {"system_prompt": "session.instructions", "voice": "session.audio.output.voice",
                "tools": "session.tools", "turn_detection": "session.audio.input.turn_detection"}
_PCM_TYPES = ("audio/pcm", "pcm16")
#: The voice that speaks when the session names none (each provider codec's default).
DEFAULT_VOICES = {"openai": openai_setup.DEFAULT_VOICE, "google": google_setup.DEFAULT_VOICE, "xai": xai.DEFAULT_VOICE}
_tools = msgspec.convert


class Invalid(ValueError):
    """A value OpenAI itself would refuse: ``param`` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass
class Update:
    """One ``session.update`` read: the session asked for, the choice of tools, and the
    fields that cannot be honoured (OpenAI names)."""

    params: SessionParams
    tool_choice: str
    unsupported: list[str] = field(default_factory=list)


def read_update(session: dict, current: SessionParams, tool_choice: str, provider: str) -> Update:
    """``session`` (a ``session.update``'s object) applied over ``current``; raises :class:`Invalid`."""
    changes: dict[str, Any] = {}
    unsupported: list[str] = []
    for key, value in session.items():
        if key in IGNORED:
            if key == "modalities" and isinstance(value, list) and "audio" not in value:
                unsupported.append("session.modalities")
        elif key == "instructions":
            changes["system_prompt"] = _instructions(value)
        elif key == "voice":
            changes["voice"] = _voice(value, current.voice)
        elif key == "turn_detection":
            changes["turn_detection"] = _turn_detection(value, provider, "session.turn_detection")
        elif key == "audio":
            _audio(value, current, provider, changes, unsupported)
        elif key == "output_modalities":
            if not (isinstance(value, list) and "audio" in value):
                unsupported.append("session.output_modalities")
        elif key == "tools":
            changes["tools"] = _tool_specs(value)
        elif key == "tool_choice":
            if value in ("auto", "none"):
                tool_choice = value
            elif value is not None:
                unsupported.append("session.tool_choice")
        else:
            unsupported.append(f"session.{key}")
    return Update(msgspec.structs.replace(current, **changes), tool_choice, unsupported)


def _instructions(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Invalid("session.instructions", "`instructions` must be a string.")
    if len(value.encode()) > MAX_SYSTEM_PROMPT_BYTES:
        raise Invalid("session.instructions", f"`instructions` must be at most {MAX_SYSTEM_PROMPT_BYTES} bytes.")
    return value or None


def _voice(value: Any, current: str | None) -> str | None:
    # a custom voice ({"id": ...}) is OpenAI's own: the session's voice stays
    return value if isinstance(value, str) and 0 < len(value) <= 128 else current


def _audio(value: Any, current: SessionParams, provider: str, changes: dict, unsupported: list[str]) -> None:
    if not isinstance(value, dict):
        raise Invalid("session.audio", "`audio` must be an object.")
    for side in ("input", "output"):
        part = value.get(side)
        if part is None:
            continue
        if not isinstance(part, dict):
            raise Invalid(f"session.audio.{side}", f"`audio.{side}` must be an object.")
        fmt = part.get("format")
        if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") in _PCM_TYPES
                                    and fmt.get("rate", OPENAI_RATE) == OPENAI_RATE):
            unsupported.append(f"session.audio.{side}.format")
        if side == "input" and "turn_detection" in part:
            changes["turn_detection"] = _turn_detection(part["turn_detection"], provider,
                                                        "session.audio.input.turn_detection")
        if side == "output" and "voice" in part:
            changes["voice"] = _voice(part["voice"], current.voice)


def _number(value: Any, param: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(param, f"`{param.rsplit('.', 1)[-1]}` must be a number.")
    return value


def _turn_detection(value: Any, provider: str, param: str) -> TurnDetection:
    if value is None:
        return ManualTurns()
    if not isinstance(value, dict):
        raise Invalid(param, "`turn_detection` must be an object or null.")
    kind = value.get("type", "server_vad")
    if kind == "semantic_vad":
        if provider in SEMANTIC_PROVIDERS:
            eagerness = value.get("eagerness")
            return SemanticTurns(eagerness if eagerness in ("low", "medium", "high", "auto") else None)
        return ServerTurns()  # the provider's closest: its own detector at its defaults
    if kind != "server_vad":
        raise Invalid(f"{param}.type", "`turn_detection.type` must be 'server_vad' or 'semantic_vad'.")
    threshold = _number(value.get("threshold"), f"{param}.threshold")
    prefix = _number(value.get("prefix_padding_ms"), f"{param}.prefix_padding_ms")
    silence = _number(value.get("silence_duration_ms"), f"{param}.silence_duration_ms")
    return ServerTurns(
        silence_ms=None if silence is None else int(min(max(silence, MIN_SILENCE_MS), MAX_SILENCE_MS)),
        prefix_ms=None if prefix is None else int(min(max(prefix, 0), MAX_PREFIX_MS)),
        sensitivity=None if threshold is None else _sensitivity(threshold))


def _sensitivity(threshold: float) -> str:
    """The ``sensitivity`` whose threshold is nearest (a higher threshold hears less)."""
    return min(VAD_THRESHOLDS, key=lambda level: abs(VAD_THRESHOLDS[level] - threshold))


def _tool_specs(value: Any) -> list[ToolSpec] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_TOOLS:
        raise Invalid("session.tools", f"`tools` must be a list of at most {MAX_TOOLS} function tools.")
    specs: list[ToolSpec] = []
    for i, tool in enumerate(value):
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise Invalid(f"session.tools[{i}]", "Only function tools are supported through the bridge.")
        fields = {k: tool[k] for k in ("name", "description", "parameters") if tool.get(k) is not None}
        try:
            specs.append(_tools(fields, ToolSpec))
        except msgspec.ValidationError as exc:
            raise Invalid(f"session.tools[{i}]", f"Invalid function tool: {exc}") from None
    if len({t.name for t in specs}) != len(specs):
        raise Invalid("session.tools", "Tool names must be unique.")
    return specs or None


def turn_detection_object(params: SessionParams) -> dict[str, Any] | None:
    """The session's turn detection in OpenAI's words (what the provider really does)."""
    turn = turn_detection(params)
    if turn.type == "manual":
        return None
    if turn.type == "semantic":
        return {"type": "semantic_vad", "eagerness": turn.eagerness or "auto",
                "create_response": True, "interrupt_response": True}
    return {"type": "server_vad", **vad_fields(turn), "create_response": True, "interrupt_response": True}


def session_object(params: SessionParams, session_id: str, expires_at: int, tool_choice: str,
                   provider: str) -> dict:
    """The OpenAI ``session`` of ``session.created``/``session.updated``."""
    return {
        "type": "realtime", "object": "realtime.session", "id": session_id,
        "model": params.model, "output_modalities": ["audio"], "instructions": params.system_prompt or "",
        "tools": [function_tool(t) for t in params.tools or ()], "tool_choice": tool_choice,
        "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": OPENAI_RATE},
                      "turn_detection": turn_detection_object(params),
                      "transcription": {"model": "provider-default"}},
            "output": {"format": {"type": "audio/pcm", "rate": OPENAI_RATE}, "voice": params.voice or DEFAULT_VOICES.get(provider, "")},
        },
        "expires_at": expires_at,
    }


def applied(current: SessionParams, asked: SessionParams, voice: str | None,
            refused: tuple[str, ...]) -> SessionParams:
    """The client's session once the provider applied ``asked`` (the voice it kept, and the
    fields it ``refused`` as they were)."""
    changes = {name: getattr(current if name in refused else asked, name)
               for name in ("system_prompt", "tools", "turn_detection")}
    return msgspec.structs.replace(current, voice=voice, **changes)


def refusal(refused: tuple[str, ...], provider: str) -> tuple[str, str]:
    """(message, param) of the error naming the fields the provider could not change."""
    names = [OPENAI_NAMES[name] for name in refused]
    message = (f"Changing {', '.join(names)} after the conversation began is not supported through the "
               f"bridge for provider '{provider}' (set them when minting, or in the first session.update, "
               "before any audio or text).")
    return message, names[0]


def user_text(item: dict) -> list[str] | None:
    """The texts of a user message item that holds only ``input_text`` parts, else None."""
    parts = item.get("content")
    if not isinstance(parts, list):
        return None
    texts = [p.get("text") for p in parts if isinstance(p, dict) and p.get("type") == "input_text"]
    if not texts or len(texts) != len(parts) or not all(isinstance(t, str) for t in texts):
        return None
    return texts


def without_turn_detection(message: str | bytes) -> str:
    """OpenAI behind the endpoint: the minted ``session.update``, minus turn detection when the
    mint left turns manual, so OpenAI's default (server VAD) stays, as its clients expect; a
    mint that chose ``server`` or ``semantic`` keeps its settings. The client's own update may
    change either."""
    event = msgspec.json.decode(message)
    if event.get("type") == "session.update":
        audio_in = event["session"].get("audio", {}).get("input", {})
        if audio_in.get("turn_detection", 0) is None:
            del audio_in["turn_detection"]
    return msgspec.json.encode(event).decode()
