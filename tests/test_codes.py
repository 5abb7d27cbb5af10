"""Named codes (``speko_bridge/codes.py``): the wire sees plain numbers and strings, the
tables match the protocol, and no code is written as a bare literal elsewhere."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import msgspec
import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from speko_bridge import frames, openapi
from speko_bridge.codes import ApiErrorCode, CloseCode, ErrorCode
from speko_bridge.frames import Close, Error, decode_frame, encode_frame
from speko_bridge.params import SessionParams
from speko_bridge.providers.google import GoogleCodec
from speko_bridge.providers.openai import OpenAICodec

PACKAGE = Path(__file__).resolve().parent.parent / "speko_bridge"

#: The protocol's tables (docs/protocol.md section 5), written out so a code that is renamed,
#: renumbered or dropped in codes.py fails here instead of on a client.
PROTOCOL_CLOSE_CODES = {1000, 1001, 1011, 4001, 4003, 4004, 4008, 4009, 4029, 4500, 4502}
PROTOCOL_ERROR_CODES = {
    "invalid_token", "token_expired", "token_used", "origin_not_allowed", "invalid_message",
    "rate_limited", "session_expired", "session_revoked", "provider_error",
    "provider_unavailable", "provider_auth_failed", "internal_error",
    "session_elsewhere", "client_gone", "unsupported_for_provider", "overloaded",
}


def test_tables_match_the_protocol():
    # 1006 is never sent; it is what a record of a dropped client carries (client_gone)
    assert {int(c) for c in CloseCode} == PROTOCOL_CLOSE_CODES | {1006}
    assert {str(c) for c in ErrorCode} == PROTOCOL_ERROR_CODES
    # the old import path keeps working
    assert frames.CloseCode is CloseCode and frames.ErrorCode is ErrorCode


@pytest.mark.parametrize("code", list(CloseCode))
def test_close_code_members_serialise_as_plain_numbers(code):
    plain = int(code)
    assert encode_frame(Close(code, "r")) == encode_frame(Close(plain, "r")) == (
        f'{{"type":"close","code":{plain},"reason":"r"}}'
    )
    assert msgspec.json.encode(code) == str(plain).encode()
    assert json.dumps({"code": code}) == f'{{"code": {plain}}}'
    assert (str(code), f"{code}") == (str(plain), str(plain))  # metrics labels, log lines
    assert decode_frame(encode_frame(Close(code))) == Close(plain)


@pytest.mark.parametrize("code", [*ErrorCode, *ApiErrorCode])
def test_error_code_members_serialise_as_plain_strings(code):
    plain = code.value
    assert encode_frame(Error(code, "m")) == f'{{"type":"error","code":"{plain}","message":"m"}}'
    assert msgspec.json.encode({"code": code}) == msgspec.json.encode({"code": plain})
    assert json.dumps(code) == json.dumps(plain)
    assert (str(code), f"{code}") == (plain, plain)


def test_prometheus_labels_are_the_plain_values():
    registry = CollectorRegistry()
    counter = Counter("refused", "x", ["reason", "code"], registry=registry)
    counter.labels(ApiErrorCode.RATE_LIMITED, CloseCode.PROVIDER_REFUSED).inc()
    assert 'refused_total{code="4502",reason="rate_limited"} 1.0' in generate_latest(registry).decode()


def test_codec_fatals_carry_members_that_encode_like_the_old_literals():
    openai = OpenAICodec(SessionParams(provider="openai", model="gpt-realtime"))
    [fatal] = openai.receive(json.dumps(
        {"type": "error", "error": {"code": "invalid_api_key", "message": "bad key"}}))
    assert fatal.close_code is CloseCode.PROVIDER_REFUSED
    assert fatal.error_code is ErrorCode.PROVIDER_AUTH_FAILED
    assert json.loads(encode_frame(Error(fatal.error_code, fatal.message)))["code"] == "provider_auth_failed"
    google = GoogleCodec(SessionParams(provider="google", model="gemini-2.5-flash-native-audio-preview-12-2025"))
    gone = google.upstream_closed(1011, "server error")
    assert (gone.close_code, gone.error_code) == (4500, "provider_unavailable")
    assert isinstance(gone.close_code, CloseCode) and isinstance(gone.error_code, ErrorCode)


def test_openapi_error_table_uses_api_error_codes():
    for code, _ in openapi.ERROR_CODES.values():
        assert isinstance(code, ApiErrorCode)
    assert "`invalid_api_key`: Missing" in openapi.document()["paths"]["/v1/sessions"]["post"][
        "responses"]["401"]["description"]


# ------------------------------------------------------------------ no literal codes left

#: Modules the scan skips: the enums themselves; the simulators, which play the *provider*
#: and speak its codes.
SKIPPED = ("codes.py", "simulator/")
#: Literals that equal one of our codes by coincidence: (module, value, why).
ALLOWED = {
    ("providers/openai.py", "session_expired"),  # OpenAI's own upstream error codes
    ("providers/openai.py", "invalid_api_key"),
    ("store/base.py", "not_found"),
    ("clientproto/openai_compat.py", "invalid_json"),  # OpenAI's own client error code  # ConsumeOutcome, the store's answer, never on the wire
}
_SENT_CLOSE = {int(c) for c in CloseCode if c >= 4000}
_NAMED_STRINGS = {str(c) for c in ErrorCode} | {str(c) for c in ApiErrorCode}


def _docstring_nodes(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def literal_codes(source: str, module: str) -> list[str]:
    tree = ast.parse(source)
    docs = _docstring_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or id(node) in docs:
            continue
        value = node.value
        if isinstance(value, bool):
            continue
        hit = (isinstance(value, int) and value in _SENT_CLOSE) or (
            isinstance(value, str) and value in _NAMED_STRINGS)
        if hit and (module, value) not in ALLOWED:
            found.append(f"{module}:{node.lineno}: {value!r}")
    return found


def test_the_scan_finds_a_literal_code():
    planted = 'def f():\n    """provider_error"""\n    return Fatal(4502, "provider_error", "x")\n'
    assert literal_codes(planted, "providers/x.py") == [
        "providers/x.py:3: 4502", "providers/x.py:3: 'provider_error'"]


def test_no_literal_close_or_error_codes_outside_codes_module():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        if any(module == s or module.startswith(s) for s in SKIPPED):
            continue
        found += literal_codes(path.read_text(), module)
    assert found == [], "use speko_bridge.codes instead of:\n" + "\n".join(found)
