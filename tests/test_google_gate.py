"""The pending-tool-call gate of a Gemini session (speko_bridge/providers/google_gate.py),
through its own methods: what Gemini is sent when a call is answered or given up on, when the
user's dropped audio has waited long enough, and what the bounded memories forget. The
codec tests drive the gate through whole sessions; these pin the edges a session rarely
reaches (a call that has waited exactly the limit, the 4,097th call)."""

from __future__ import annotations

import json

import msgspec

from speko_bridge.frames import ToolCall
from speko_bridge.providers.google_gate import MAX_REMEMBERED_CALLS, TOOL_WAIT_MAX_MS, ToolCallGate
from speko_bridge.providers.google_wire import GEMINI_INPUT_RATE, FunctionCall
from speko_bridge.providers.google_wire import ToolCall as WireToolCall

#: Bytes of 16 kHz PCM16 that make up the longest wait.
WAIT_BYTES = TOOL_WAIT_MAX_MS * 2 * GEMINI_INPUT_RATE // 1000


def call(gate: ToolCallGate, call_id: str, name: str = "lookup", args: bytes = b'{"q":1}') -> list:
    out: list = []
    problems: list[str] = []
    emitted = gate.calls(WireToolCall([FunctionCall(call_id, name, msgspec.Raw(args))]), out,
                         lambda why, _out: problems.append(why))
    assert not problems
    assert emitted is bool(out)
    return out


def responses(message: str) -> list[dict]:
    return json.loads(message)["toolResponse"]["functionResponses"]


def test_the_wait_ends_at_exactly_the_limit_of_dropped_audio():
    gate = ToolCallGate()
    call(gate, "c1")
    assert gate.closed
    assert gate.drop_audio(WAIT_BYTES - 2) is False
    assert gate.drop_audio(1) is False  # one byte short
    assert gate.drop_audio(1) is True


def test_each_new_call_and_each_abandon_starts_the_wait_again():
    gate = ToolCallGate()
    call(gate, "c1")
    gate.drop_audio(WAIT_BYTES - 1)
    call(gate, "c2")  # a second call: the user has waited for this one for no time yet
    assert gate.drop_audio(WAIT_BYTES - 1) is False
    assert gate.drop_audio(1) is True
    _, answered = gate.abandon("took too long")
    assert answered == 2 and not gate.closed
    call(gate, "c3")
    assert gate.drop_audio(WAIT_BYTES - 1) is False
    assert gate.drop_audio(1) is True


def test_a_repeated_call_id_is_not_a_new_call():
    gate = ToolCallGate()
    assert call(gate, "c1") == [ToolCall("c1", "lookup", '{"q":1}')]
    assert call(gate, "c1") == []  # calls() says False: nothing new
    gate.cancel(["c1"])
    assert call(gate, "c1") == []  # nor after it was cancelled


def test_abandon_answers_every_pending_call_with_its_name_and_the_reason():
    gate = ToolCallGate()
    call(gate, "b", name="weather")
    call(gate, "a", name="lookup")
    message, answered = gate.abandon("the user interrupted")
    assert answered == 2
    assert responses(message) == [
        {"id": "a", "name": "lookup", "response": {"error": "the user interrupted"}},
        {"id": "b", "name": "weather", "response": {"error": "the user interrupted"}},
    ]
    assert gate.answer("a", '{"late": true}') is None  # given up on: a late result is dropped


def test_past_the_remembered_calls_the_oldest_names_are_forgotten_not_the_calls():
    gate = ToolCallGate()
    for i in range(MAX_REMEMBERED_CALLS):
        call(gate, f"c{i}", name=f"tool{i}")
    assert responses(gate.answer("c0", "{}"))[0]["name"] == "tool0"  # 4,096 remembered
    call(gate, "c_next", name="next")  # the 4,097th: the names so far are dropped first
    assert responses(gate.answer("c1", "{}"))[0]["name"] == ""
    assert responses(gate.answer("c_next", "{}"))[0]["name"] == "next"
    # a call whose name was forgotten is still answered, with an empty name
    gate = ToolCallGate()
    for i in range(MAX_REMEMBERED_CALLS + 1):
        call(gate, f"c{i}", name=f"tool{i}")
    replies = {r["id"]: r["name"] for r in responses(gate.abandon("gone")[0])}
    assert len(replies) == MAX_REMEMBERED_CALLS + 1
    assert replies["c0"] == "" and replies[f"c{MAX_REMEMBERED_CALLS}"] == f"tool{MAX_REMEMBERED_CALLS}"


def test_past_the_remembered_cancellations_the_oldest_are_forgotten():
    gate = ToolCallGate()
    gate.cancel(f"c{i}" for i in range(MAX_REMEMBERED_CALLS))
    assert gate.answer("c0", "{}") is None  # 4,096 remembered: c0's late result is dropped
    gate.cancel(["c_next"])  # the 4,097th: the ones so far are dropped first
    assert gate.answer("c0", "{}") is not None
    assert gate.answer("c_next", "{}") is None
