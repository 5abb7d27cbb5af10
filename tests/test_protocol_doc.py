"""``docs/protocol.md`` is generated from the types, and says everything they carry.

The committed file must equal the generator's output (so a field, frame or code added to
the types without regenerating the page fails here), every field and code must have its
meaning written in ``protocol_text.py``, and the repository must point nowhere outside it.
"""

from __future__ import annotations

import subprocess
import typing
from pathlib import Path

import msgspec.inspect as mi
import pytest

from speko_bridge import frames, protocol_doc, protocol_text, wire
from speko_bridge.codes import ApiErrorCode, CloseCode, ErrorCode
from speko_bridge.params import SemanticTurns, ServerTurns, SessionParams, ToolSpec

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "protocol.md"


def test_committed_page_is_generated_from_the_types():
    assert DOC.read_text() == protocol_doc.document(), \
        "docs/protocol.md is stale: run `python -m speko_bridge.protocol_doc > docs/protocol.md`"


@pytest.mark.parametrize("cls", [SessionParams, ToolSpec, ServerTurns, SemanticTurns, wire.SessionCreated,
                                 wire.SessionView])
def test_every_field_is_described(cls):
    missing = [k for k in protocol_doc.described_fields(cls) if k not in protocol_text.FIELD_TEXT]
    assert not missing


def test_every_message_frame_and_code_is_on_the_page():
    text = DOC.read_text()
    for union in (frames.ClientMessage, frames.TextFrame):
        for cls in typing.get_args(union):
            tag = mi.type_info(cls).tag
            assert f"| `{tag}` |" in text, tag
    for code in CloseCode:
        assert f"| `{code.value}` | {code.name} |" in text
    for enum in (ErrorCode, ApiErrorCode):
        for code in enum:
            assert f"| `{code.value}` | {code.name} |" in text


def test_mint_fields_are_on_the_page_with_their_rules():
    text = DOC.read_text()
    for name, kind, *_ in protocol_doc.struct_fields(SessionParams):
        assert f"| `{name}` | {kind} |" in text


def test_the_repository_points_nowhere_outside_it():
    tracked = subprocess.run(["git", "grep", "-l", "-e", "../shared", "-e", "/work/shared", "-e", "PROTOCOL.md",
                              "--", ".", ":!tests/test_protocol_doc.py", ":!tests/test_examples.py"],
                             cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert tracked == []
