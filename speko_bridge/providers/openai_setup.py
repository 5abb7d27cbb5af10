"""The first ``session.update`` an OpenAI Realtime session gets: what a mint asks for, in
OpenAI's GA ``session`` object.

Field names follow the ``openai`` package's ``types/realtime`` (the codec tests validate the
event against ``RealtimeClientEventParam``). :mod:`.xai` builds its own session object from
the same pieces (:func:`vad_fields`, :func:`function_tool`), and the OpenAI-compatible client
endpoint reuses :func:`function_tool` and :data:`OPENAI_RATE`.
"""

from __future__ import annotations

from typing import Any

from ..params import ServerTurns, SessionParams, turn_detection

OPENAI_RATE = 24000
DEFAULT_VOICE = "marin"
#: The transcription model that makes user transcripts arrive (providers.md 2.2).
TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe"

#: ``sensitivity`` -> server_vad ``threshold`` (0..1, OpenAI's default 0.5): a higher
#: threshold needs louder audio to count as speech, so it is the *less* sensitive setting.
VAD_THRESHOLDS = {"low": 0.7, "medium": 0.5, "high": 0.3}


def vad_fields(turn: ServerTurns) -> dict[str, Any]:
    """The server_vad fields a ``server`` turn detection sets (the rest: provider defaults)."""
    out: dict[str, Any] = {}
    if turn.sensitivity is not None:
        out["threshold"] = VAD_THRESHOLDS[turn.sensitivity]
    if turn.prefix_ms is not None:
        out["prefix_padding_ms"] = turn.prefix_ms
    if turn.silence_ms is not None:
        out["silence_duration_ms"] = turn.silence_ms
    return out


def openai_turn_detection(params: SessionParams) -> dict[str, Any] | None:
    """``audio.input.turn_detection`` for the minted turn detection (None: manual)."""
    turn = turn_detection(params)
    if turn.type == "server":
        return {"type": "server_vad", **vad_fields(turn), "create_response": True, "interrupt_response": True}
    if turn.type == "semantic":
        eagerness = {"eagerness": turn.eagerness} if turn.eagerness is not None else {}
        return {"type": "semantic_vad", **eagerness, "create_response": True, "interrupt_response": True}
    return None


def openai_session_config(params: SessionParams) -> dict[str, Any]:
    """The GA ``session`` object of the first ``session.update`` for these params."""
    session: dict[str, Any] = {
        "type": "realtime",
        "model": params.model,
        "output_modalities": ["audio"],
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": OPENAI_RATE},
                "turn_detection": openai_turn_detection(params),
                "transcription": {"model": TRANSCRIPTION_MODEL},
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": OPENAI_RATE},
                "voice": params.voice or DEFAULT_VOICE,
            },
        },
    }
    if params.system_prompt:
        session["instructions"] = params.system_prompt
    if params.tools:
        session["tools"] = [function_tool(t) for t in params.tools]
        session["tool_choice"] = "auto"
    return session


def function_tool(tool) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "function", "name": tool.name}
    if tool.description:
        spec["description"] = tool.description
    spec["parameters"] = tool.parameters if tool.parameters is not None else {"type": "object", "properties": {}}
    return spec
