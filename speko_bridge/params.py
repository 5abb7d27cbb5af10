"""``RealtimeConnectParams``: the body of ``POST /v1/sessions`` (docs/protocol.md section 1).

The msgspec Struct *is* the schema: the API decodes with it, the store keeps it, the
codecs read it, and ``openapi.yaml`` is generated from it (see ``speko_bridge/openapi.py``).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union

import msgspec

Provider = Literal["openai", "google", "xai"]
SampleRate = Literal[16000, 24000]

#: Longest session once connected; larger requests are capped to this, not refused.
MAX_TTL_SECONDS = 1800
#: Session duration when the mint does not say (documented in the README and openapi.yaml).
DEFAULT_TTL_SECONDS = 600
#: ``systemPrompt`` limit, in UTF-8 bytes (docs/protocol.md: at most 32 KiB).
MAX_SYSTEM_PROMPT_BYTES = 32 * 1024
#: ``metadata`` limit, as JSON (docs/protocol.md: at most 16 KiB).
MAX_METADATA_BYTES = 16 * 1024
#: At most 64 tools (docs/protocol.md).
MAX_TOOLS = 64

#: Turn-detection bounds (docs/protocol.md section 1): under 100 ms of silence every breath
#: ends a turn; over 5 s the user waits for an answer that a ``commit`` would have brought.
MIN_SILENCE_MS, MAX_SILENCE_MS = 100, 5000
#: Audio kept before detected speech: 2 s covers any onset the detector is late for.
MAX_PREFIX_MS = 2000
#: Providers whose model can judge the end of a turn from the words (OpenAI's semantic_vad).
SEMANTIC_PROVIDERS = frozenset({"openai"})

ToolName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class ToolSpec(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A function the model may call; ``parameters`` is a JSON Schema object."""

    name: ToolName
    description: Annotated[str, msgspec.Meta(max_length=4096)] | None = None
    parameters: dict[str, Any] | None = None


class ManualTurns(msgspec.Struct, tag="manual", tag_field="type", forbid_unknown_fields=True):
    """The client ends each turn with ``commit`` (protocol v1's behaviour, the default)."""

    type: ClassVar[str] = "manual"


class ServerTurns(msgspec.Struct, tag="server", tag_field="type", rename="camel",
                  forbid_unknown_fields=True, omit_defaults=True):
    """The provider's voice activity detection ends the turn; speech interrupts the reply.
    Fields left out take the provider's own defaults."""

    type: ClassVar[str] = "server"
    silence_ms: Annotated[int, msgspec.Meta(ge=MIN_SILENCE_MS, le=MAX_SILENCE_MS)] | None = None
    prefix_ms: Annotated[int, msgspec.Meta(ge=0, le=MAX_PREFIX_MS)] | None = None
    sensitivity: Literal["low", "medium", "high"] | None = None


class SemanticTurns(msgspec.Struct, tag="semantic", tag_field="type", forbid_unknown_fields=True,
                    omit_defaults=True):
    """The model judges from the words whether the user has finished (OpenAI only)."""

    type: ClassVar[str] = "semantic"
    eagerness: Literal["low", "medium", "high", "auto"] | None = None


#: Who ends the user's turn (protocol v2); a field of another type is an unknown field.
TurnDetection = Union[ManualTurns, ServerTurns, SemanticTurns]


class SessionParams(msgspec.Struct, rename="camel", forbid_unknown_fields=True, omit_defaults=True):
    """What a backend asks for when it mints a session."""

    provider: Provider
    model: Annotated[str, msgspec.Meta(
        min_length=1, max_length=128,
        description="A model the provider serves, from the server's catalogue (docs/providers.md; "
                    "operators extend it with SPEKO_MODELS_<PROVIDER>); any other is refused with 422.")]
    voice: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    system_prompt: Annotated[str, msgspec.Meta(max_length=MAX_SYSTEM_PROMPT_BYTES)] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    input_sample_rate: SampleRate = 24000
    output_sample_rate: SampleRate = 24000
    tools: Annotated[list[ToolSpec], msgspec.Meta(
        max_length=MAX_TOOLS, description="Functions the model may call; names must be unique.",
        extra_json_schema={"uniqueItems": True})] | None = None
    metadata: dict[str, Any] | None = None
    ttl_seconds: Annotated[int, msgspec.Meta(ge=1)] | None = None
    turn_detection: TurnDetection | None = None


def turn_detection(params: SessionParams) -> TurnDetection:
    """The effective turn detection: ``manual`` when the mint did not say."""
    return params.turn_detection if params.turn_detection is not None else ManualTurns()


def hands_free(params: SessionParams) -> bool:
    """True when the provider, not the client, ends the user's turns."""
    return turn_detection(params).type != "manual"


class ParamsError(ValueError):
    """A body that decodes but breaks a rule msgspec cannot express; names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{message} - at `$.{field}`")
        self.field = field


_encoder = msgspec.json.Encoder()


def check_params(params: SessionParams) -> SessionParams:
    """Apply the byte-size rules and the ttl cap; return params with ``ttl_seconds`` set."""
    if params.system_prompt is not None:
        if len(params.system_prompt.encode()) > MAX_SYSTEM_PROMPT_BYTES:
            raise ParamsError("systemPrompt", f"must be at most {MAX_SYSTEM_PROMPT_BYTES} bytes")
    if params.metadata is not None:
        if len(_encoder.encode(params.metadata)) > MAX_METADATA_BYTES:
            raise ParamsError("metadata", f"must be at most {MAX_METADATA_BYTES} bytes as JSON")
    if params.tools:
        seen: set[str] = set()
        for i, tool in enumerate(params.tools):
            if tool.name in seen:
                raise ParamsError(f"tools[{i}].name", f"duplicate tool name {tool.name!r}")
            seen.add(tool.name)
            if tool.parameters is not None and tool.parameters.get("type", "object") != "object":
                raise ParamsError(f"tools[{i}].parameters", "must be a JSON Schema of type object")
    turn = params.turn_detection
    if turn is not None:
        if turn.type == "semantic" and params.provider not in SEMANTIC_PROVIDERS:
            raise ParamsError("turnDetection.type",
                              f"'semantic' turn detection is not offered by provider {params.provider!r}; "
                              "use 'server' or 'manual'")
    ttl = params.ttl_seconds if params.ttl_seconds is not None else DEFAULT_TTL_SECONDS
    return msgspec.structs.replace(params, ttl_seconds=min(ttl, MAX_TTL_SECONDS))
