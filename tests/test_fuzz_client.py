"""Fuzzed client input over a real socket. Hypothesis writes what a buggy or hostile
browser might send (bad JSON, wrong types, unknown types, extra fields, huge strings,
binary of every length including 0 and odd, any interleaving of commit / interrupt /
tool_result); the contract (docs/protocol.md section 4) says which are valid. Every invalid
text message gets exactly one ``error`` ``invalid_message``, the session goes on, what
reaches the provider is always a valid provider event, and the server logs no traceback."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speko_bridge.session.client_to_provider import MAX_CLIENT_MESSAGE_BYTES

from .conftest import run_bridge
from .strategies import json_values
from .wsclient import Received, assert_clean_close, closed, mint, read


def _reject_constant(name: str):
    raise ValueError(name)  # NaN / Infinity are not JSON


def _unique_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate key")  # no single meaning: refused (README, "Client messages")
    return dict(pairs)


def contract_valid(text: str) -> bool:
    """docs/protocol.md section 4, written independently of the bridge's decoder."""
    try:
        obj = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except ValueError:
        return False
    if not isinstance(obj, dict):
        return False
    kind = obj.get("type")
    if kind in ("commit", "interrupt"):
        return set(obj) == {"type"}
    if kind == "tool_result":
        return (set(obj) == {"type", "callId", "output"} and isinstance(obj["callId"], str)
                and isinstance(obj["output"], str))
    return False


chars = st.characters(exclude_categories=("Cs",))  # a WebSocket text frame is valid UTF-8
TYPES = ["commit", "interrupt", "tool_result", "Commit", "", "audio", "session.update", "close"]
shaped = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES) | json_values},
    optional={"callId": st.text(chars, max_size=20) | json_values,
              "output": st.text(chars, max_size=40) | json_values,
              "extra": json_values},
).map(json.dumps)
huge = st.builds(
    lambda field, ch, n: json.dumps({"type": "tool_result", "callId": "call_1", "output": "x", field: ch * n}),
    st.sampled_from(["output", "callId", "type", "pad"]), st.sampled_from(["a", "\u00e9", "\u4e2d", "\\"]),
    st.integers(1_000, 40_000),  # <= 240 kB escaped: under the 256 KiB limit
)
text_messages = st.one_of(
    st.text(chars, max_size=300),  # mostly not JSON at all
    json_values.map(json.dumps),  # JSON of the wrong shape
    shaped,
    huge,
    st.sampled_from(['{"type":"commit"}', '{"type":"interrupt"}',
                     '{"type":"tool_result","callId":"call_1","output":"{}"}',
                     '{"type":"commit"', '{"type": NaN}', '[{"type":"commit"}]', "null", " ", "",
                     '{"type":"commit","type":"interrupt"}']),
)
messages = st.lists(st.one_of(text_messages, st.binary(max_size=4001)), max_size=25)


@pytest.fixture
async def fuzz_bridge(env, openai_sims):
    sim = await openai_sims(reply_ms=100)
    async with run_bridge({**env, "SPEKO_OPENAI_URL": sim.url, "OPENAI_API_KEY": "sk-sim"}) as b:
        yield b, sim


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sent=messages)
async def test_every_message_gets_its_contract_answer_and_the_session_goes_on(http, fuzz_bridge, caplog, sent):
    bridge, sim = fuzz_bridge
    caplog.set_level(logging.WARNING)
    created = await mint(http, bridge)
    probe = f"probe-{uuid.uuid4().hex}"
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        for m in sent:
            await (ws.send_bytes(m) if isinstance(m, bytes) else ws.send_str(m))
        await ws.send_str(json.dumps({"type": probe}))

        def probe_answered(r: Received) -> bool:
            return closed(r) or any(probe in e["message"] for e in r.of("error"))

        got = await read(ws, Received(), probe_answered, timeout=20)
        assert not closed(got) and not got.of("close"), got.frames[-3:]
    invalid = [e for e in got.of("error") if e["code"] == "invalid_message"]
    expected = sum(1 for m in sent if isinstance(m, str) and not contract_valid(m)) + 1  # + the probe
    assert len(invalid) == expected, ([m[:80] for m in sent if isinstance(m, str)], invalid)
    assert {e["code"] for e in got.of("error")} <= {"invalid_message", "provider_error"}
    assert sim.violations == []
    problems = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert problems == [], [r.getMessage() for r in problems]


async def test_the_size_limit_counts_utf8_bytes_not_characters(http, fuzz_bridge):
    bridge, _ = fuzz_bridge
    created = await mint(http, bridge)
    text = json.dumps({"type": "tool_result", "callId": "c", "output": "\u4e2d" * 90_000}, ensure_ascii=False)
    assert len(text) < MAX_CLIENT_MESSAGE_BYTES < len(text.encode())
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        await ws.send_str(text)
        got = await read(ws, Received(), closed)
    assert got.of("error")[0]["code"] == "invalid_message"
    assert_clean_close(got, 4009)
