"""``docs/protocol.md``, the wire contract as users of the project read it, built from the
msgspec types so that its tables cannot drift from the code.

The tables (the mint body and answer, every client message, every server frame, every
close and error code, the limits) are generated here from ``params.py``, ``wire.py``,
``frames.py``, ``codes.py`` and the limits' own named constants; the prose between them is
written here too. ``python -m speko_bridge.protocol_doc > docs/protocol.md`` writes the file
(``make protocol-doc``), and ``tests/test_protocol_doc.py`` fails when the committed file
and this module disagree, or when a type gains a field or a code nobody described.
"""

from __future__ import annotations

import typing

import msgspec
import msgspec.inspect as mi

from . import frames, wire
from .codes import ApiErrorCode, CloseCode, ErrorCode
from .params import (
    DEFAULT_TTL_SECONDS,
    MAX_METADATA_BYTES,
    MAX_SYSTEM_PROMPT_BYTES,
    MAX_TOOLS,
    MAX_TTL_SECONDS,
    SessionParams,
    TurnDetection,
)
from .protocol_text import (
    API_ERROR_TEXT,
    CLOSE_TEXT,
    ERROR_TEXT,
    FIELD_TEXT,
    INTRO,
    LIMITS,
    SECTION_CLIENT,
    SECTION_MINT,
    SECTION_RATES,
    SECTION_SERVER,
    SECTION_SOCKET,
    SECTION_TURNS,
)


def _type(t: mi.Type) -> str:
    """A short, readable name for one inspected msgspec type."""
    kind = type(t)
    if kind is mi.Metadata:  # a type with extra JSON Schema attached
        return _type(t.type)
    if kind is mi.StrType:
        rules = []
        if t.min_length is not None:
            rules.append(f"{t.min_length}..{t.max_length if t.max_length is not None else ''}")
        elif t.max_length is not None:
            rules.append(f"at most {t.max_length}")
        if t.pattern:
            rules.append(f"`{t.pattern}`")
        return "string" + (f" ({', '.join(rules)})" if rules else "")
    if kind in (mi.IntType, mi.FloatType):
        name = "integer" if kind is mi.IntType else "number"
        lo, hi = t.ge, t.le
        if lo is not None and hi is not None:
            return f"{name} {lo:g}..{hi:g}"
        if lo is not None:
            return f"{name} >= {lo:g}"
        return name
    if kind is mi.BoolType:
        return "boolean"
    if kind is mi.LiteralType:
        return " \\| ".join(f"`{v}`" if isinstance(v, str) else str(v) for v in t.values)
    if kind is mi.UnionType:
        arms = [a for a in t.types if type(a) is not mi.NoneType]
        return " \\| ".join(_type(a) for a in arms)
    if kind is mi.ListType:
        return f"{_type(t.item_type)}[]" + (f" (at most {t.max_length})" if t.max_length else "")
    if kind is mi.StructType:
        return t.cls.__name__
    if kind in (mi.DictType, mi.AnyType):
        return "object"
    if kind is mi.BytesType:
        return "bytes"
    return type(t).__name__  # pragma: no cover  (a new kind of field: the test reads it)


def struct_fields(cls: type) -> list[tuple[str, str, bool, object]]:
    """(wire name, type, required, default) for each field of a Struct, tag excluded."""
    info = mi.type_info(cls)
    rows = []
    for f in info.fields:
        default = f.default if f.default is not mi.NODEFAULT else None
        if f.default_factory is not mi.NODEFAULT:
            default = msgspec.to_builtins(f.default_factory())
        rows.append((f.encode_name, _type(f.type), f.required, default))
    return rows


def described_fields(cls: type) -> list[str]:
    """``Class.field`` keys (wire names) every field of ``cls`` needs in FIELD_TEXT."""
    return [f"{cls.__name__}.{name}" for name, *_ in struct_fields(cls)]


def _default(default: object) -> str:
    if default is None:
        return ""
    return f"`{msgspec.json.encode(default).decode()}`"


def field_table(cls: type, with_default: bool = True) -> str:
    head = "| field | type | required | default | meaning |\n|---|---|---|---|---|\n" if with_default else \
        "| field | type | meaning |\n|---|---|---|\n"
    lines = []
    for name, kind, required, default in struct_fields(cls):
        text = FIELD_TEXT[f"{cls.__name__}.{name}"]
        if with_default:
            lines.append(f"| `{name}` | {kind} | {'yes' if required else 'no'} | {_default(default)} | {text} |")
        else:
            lines.append(f"| `{name}` | {kind} | {text} |")
    return head + "\n".join(lines) + "\n"


def _tag(cls: type) -> str:
    return mi.type_info(cls).tag


def message_table(union: object) -> str:
    """One row per tagged Struct of a union: its ``type`` and its fields."""
    lines = ["| `type` | fields | meaning |", "|---|---|---|"]
    for cls in typing.get_args(union):
        if not mi.type_info(cls).tag:
            continue  # the binary audio frame has no JSON form
        fields = ", ".join(
            f"`{name}`: {kind}" + ("" if required else " (optional)")
            for name, kind, required, _ in struct_fields(cls) if name != "type"
        ) or "none"
        lines.append(f"| `{_tag(cls)}` | {fields} | {FIELD_TEXT[f'{cls.__name__}']} |")
    return "\n".join(lines) + "\n"


def code_table(codes: type, texts: dict, head: str) -> str:
    lines = [f"| {head} | name | when |", "|---|---|---|"]
    for code in codes:
        lines.append(f"| `{code.value}` | {code.name} | {texts[code]} |")
    return "\n".join(lines) + "\n"


def limits_table() -> str:
    lines = ["| limit | value | what happens past it |", "|---|---|---|"]
    lines += [f"| {what} | {value} | {effect} |" for what, value, effect in LIMITS]
    return "\n".join(lines) + "\n"


def document() -> str:
    parts = [
        INTRO,
        SECTION_MINT.format(
            params=field_table(SessionParams),
            tool=field_table(wire_tool(), with_default=True),
            turn="\n".join(f"`{{\"type\": \"{cls.type}\"}}`, {FIELD_TEXT[cls.__name__]}:\n\n"
                           + (field_table(cls) if struct_fields(cls) else "no other field.\n")
                           for cls in typing.get_args(TurnDetection)),
            created=field_table(wire.SessionCreated, with_default=False),
            view=field_table(wire.SessionView, with_default=False),
            api_errors=code_table(ApiErrorCode, API_ERROR_TEXT, "`error.code`"),
            max_ttl=MAX_TTL_SECONDS, default_ttl=DEFAULT_TTL_SECONDS,
            max_prompt=MAX_SYSTEM_PROMPT_BYTES, max_metadata=MAX_METADATA_BYTES, max_tools=MAX_TOOLS,
        ),
        SECTION_TURNS,
        SECTION_SOCKET,
        SECTION_CLIENT.format(client=message_table(frames.ClientMessage)),
        SECTION_SERVER.format(
            frames=message_table(frames.TextFrame),
            close=code_table(CloseCode, CLOSE_TEXT, "code"),
            errors=code_table(ErrorCode, ERROR_TEXT, "`code`"),
        ),
        SECTION_RATES,
        "## 7. Limits\n\n" + limits_table(),
    ]
    return "\n".join(p.rstrip("\n") + "\n" for p in parts)


def wire_tool() -> type:
    from .params import ToolSpec
    return ToolSpec


if __name__ == "__main__":
    print(document(), end="")
