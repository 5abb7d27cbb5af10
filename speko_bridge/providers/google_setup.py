"""The Gemini Live ``setup`` message the codec opens (and resumes) a session with.

Split from ``google.py`` because it is the part that follows the service's configuration
surface rather than its event stream; each choice below cites what it answers:

- **Manual turns** (``automaticActivityDetection.disabled``): the client's ``commit`` ends a
  turn, as for the other providers.
- **Tools are BLOCKING.** Newer Live models default function declarations to NON_BLOCKING
  (the model keeps talking, or ends its turn, before the result arrives); the bridge's
  contract is that the model waits for ``tool_result``. ``FunctionDeclaration.behavior``
  (google-genai ``types.Behavior``: "only supported by the BidiGenerateContent method") is
  set on every declaration. The Gemini API (the only Google endpoint the bridge speaks)
  accepts it; Vertex's converter drops it, which is why it is not simply the default.
- **contextWindowCompression** with a sliding window: without it an audio-only session ends
  at about 15 minutes of context (ai.google.dev "Session management": "audio-only sessions
  are limited to 15 minutes"), while a bridge session may last ``ttlSeconds`` (up to 30
  minutes). goAway resumption handles the separate ~10 minute *connection* limit.
- **Tool schemas** keep what the SDK's ``types.Schema`` carries (``anyOf``, ``ref``/``defs``,
  bounds, ``pattern``, ``title``, ...) instead of dropping it; JSON Schema spellings are
  renamed to Gemini's (``$ref: #/$defs/X`` -> ``ref: #/defs/X``, ``oneOf`` -> ``anyOf``,
  ``["string", "null"]`` -> ``nullable``). Keywords ``Schema`` has no field for (``const``,
  ``exclusiveMinimum``, ``not``, ...) are dropped: the API refuses unknown fields (1007).
"""

from __future__ import annotations

from typing import Any

from ..params import SessionParams, turn_detection

DEFAULT_VOICE = "Puck"
#: Gemini's prebuilt voices (ai.google.dev/gemini-api/docs/speech-generation "Voice options",
#: which the Live API's native-audio models share).
VOICES = ("Zephyr", "Puck", "Charon", "Kore", "Fenrir", "Leda", "Orus", "Aoede", "Callirrhoe", "Autonoe",
          "Enceladus", "Iapetus", "Umbriel", "Algieba", "Despina", "Erinome", "Algenib", "Rasalgethi",
          "Laomedeia", "Achernar", "Alnilam", "Schedar", "Gacrux", "Pulcherrima", "Achird",
          "Zubenelgenubi", "Vindemiatrix", "Sadachbia", "Sadaltager", "Sulafat")
#: google-genai ``types.Behavior``: the model waits for the function response.
TOOL_BEHAVIOR = "BLOCKING"

_SCHEMA_TYPES = {"string", "number", "integer", "boolean", "array", "object"}
#: JSON Schema keywords copied as they are: the camelCase fields of google-genai ``types.Schema``.
_SCHEMA_SCALARS = ("description", "enum", "required", "format", "nullable", "title", "pattern", "default",
                   "example", "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems",
                   "minProperties", "maxProperties", "propertyOrdering")


def _ref(ref: Any) -> Any:
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return "#/defs/" + ref[len("#/$defs/"):]
    return ref


def gemini_schema(schema: Any) -> Any:
    """JSON Schema -> Gemini's ``Schema`` (upper-case types, its field names)."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    t = schema.get("type")
    if isinstance(t, list):  # ["string", "null"]
        out["nullable"] = "null" in t
        t = next((x for x in t if x != "null"), None)
    if t in _SCHEMA_TYPES:
        out["type"] = t.upper()
    for key in _SCHEMA_SCALARS:
        if key in schema:
            out[key] = schema[key]
    if "$ref" in schema:
        out["ref"] = _ref(schema["$ref"])
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {k: gemini_schema(v) for k, v in schema["properties"].items()}
    if "items" in schema:
        out["items"] = gemini_schema(schema["items"])
    if isinstance(schema.get("additionalProperties"), (bool, dict)):
        extra = schema["additionalProperties"]
        out["additionalProperties"] = extra if isinstance(extra, bool) else gemini_schema(extra)
    arms = schema.get("anyOf", schema.get("oneOf"))
    if isinstance(arms, list):
        out["anyOf"] = [gemini_schema(arm) for arm in arms]
    defs = schema.get("$defs", schema.get("definitions"))
    if isinstance(defs, dict):
        out["defs"] = {k: gemini_schema(v) for k, v in defs.items()}
    return out


#: ``sensitivity`` -> Gemini's start/end-of-speech sensitivity (google-genai
#: ``StartSensitivity``/``EndSensitivity`` have LOW and HIGH only: ``medium`` keeps Gemini's default).
SENSITIVITIES = {"low": "LOW", "high": "HIGH"}


def gemini_input_config(params: SessionParams) -> dict[str, Any]:
    """``realtimeInputConfig`` for the minted turn detection: off for manual turns (the
    bridge brackets each turn with activity signals), Gemini's detector for server turns."""
    turn = turn_detection(params)
    if turn.type != "server":
        return {"automaticActivityDetection": {"disabled": True}}
    detection: dict[str, Any] = {"disabled": False}
    level = SENSITIVITIES.get(turn.sensitivity or "")
    if level is not None:
        detection["startOfSpeechSensitivity"] = f"START_SENSITIVITY_{level}"
        detection["endOfSpeechSensitivity"] = f"END_SENSITIVITY_{level}"
    if turn.prefix_ms is not None:
        detection["prefixPaddingMs"] = turn.prefix_ms
    if turn.silence_ms is not None:
        detection["silenceDurationMs"] = turn.silence_ms
    return {"automaticActivityDetection": detection, "activityHandling": "START_OF_ACTIVITY_INTERRUPTS"}


def gemini_setup(params: SessionParams, handle: str | None) -> dict[str, Any]:
    model = params.model if params.model.startswith("models/") else f"models/{params.model}"
    generation: dict[str, Any] = {
        "responseModalities": ["AUDIO"],
        "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": params.voice or DEFAULT_VOICE}}},
    }
    if params.temperature is not None:
        generation["temperature"] = params.temperature
    setup: dict[str, Any] = {
        "model": model,
        "generationConfig": generation,
        "realtimeInputConfig": gemini_input_config(params),
        "inputAudioTranscription": {},
        "outputAudioTranscription": {},
        "sessionResumption": {"handle": handle} if handle else {},
        "contextWindowCompression": {"slidingWindow": {}},
    }
    if params.system_prompt:
        setup["systemInstruction"] = {"parts": [{"text": params.system_prompt}], "role": "user"}
    if params.tools:
        declarations = []
        for tool in params.tools:
            decl: dict[str, Any] = {"name": tool.name, "behavior": TOOL_BEHAVIOR}
            if tool.description:
                decl["description"] = tool.description
            if tool.parameters and tool.parameters.get("properties"):
                decl["parameters"] = gemini_schema(tool.parameters)
            declarations.append(decl)
        setup["tools"] = [{"functionDeclarations": declarations}]
    return {"setup": setup}
