"""``RealtimeConnectParams``: the body of ``POST /v1/sessions`` (docs/protocol.md section 1).

The msgspec Struct *is* the schema: the API decodes with it, the store keeps it, the
codecs read it, and ``openapi.yaml`` is generated from it (see ``speko_bridge/openapi.py``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

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

ToolName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class ToolSpec(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A function the model may call; ``parameters`` is a JSON Schema object."""

    name: ToolName
    description: Annotated[str, msgspec.Meta(max_length=4096)] | None = None
    parameters: dict[str, Any] | None = None


class SessionParams(msgspec.Struct, rename="camel", forbid_unknown_fields=True, omit_defaults=True):
    """What a backend asks for when it mints a session."""

    provider: Provider
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
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
    ttl = params.ttl_seconds if params.ttl_seconds is not None else DEFAULT_TTL_SECONDS
    return msgspec.structs.replace(params, ttl_seconds=min(ttl, MAX_TTL_SECONDS))
