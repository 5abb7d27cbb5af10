"""The OpenAI codec's typed turns and barge-in, sans-IO (bridge-level: tests/test_handsfree.py)."""

from __future__ import annotations

import base64
import json

from speko_bridge.params import ServerTurns, SessionParams
from speko_bridge.providers.openai import OpenAICodec
from speko_bridge.simulator.openai import client_event_checker

check = client_event_checker()


def codec() -> OpenAICodec:
    c = OpenAICodec(SessionParams(provider="openai", model="gpt-realtime", turn_detection=ServerTurns()))
    c.start()
    c.receive('{"type":"session.updated","session":{}}')
    return c


def sent(messages) -> list[dict]:
    out = [json.loads(m) for m in messages]
    for event in out:
        assert check(event) is None, check(event)
    return out


def test_a_typed_turn_is_a_user_text_item_then_a_response():
    c = codec()
    item, create = sent(c.text("hello there"))
    assert item == {"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello there"}]}}
    assert create["type"] == "response.create"
    # a second typed turn while that response is active: its item goes up, its response waits
    assert [e["type"] for e in sent(c.text("and more"))] == ["conversation.item.create"]
    c.receive('{"type":"response.done","response":{"id":"r1","status":"completed"}}')
    assert [e["type"] for e in sent(c.drain_outbound())] == ["response.create"]


def test_barge_in_cancels_and_truncates_only_a_response_the_provider_began():
    c = codec()
    c.text("hi")  # asked for, not begun: the answer to come
    assert c.barge_in(500) == []
    c.receive('{"type":"response.created","response":{"id":"resp_1"}}')
    pcm = base64.b64encode(b"\x00\x00" * 24000).decode()  # 1 s of audio received
    c.receive(json.dumps({"type": "response.output_audio.delta", "item_id": "item_1", "delta": pcm}))
    cancel, truncate = sent(c.barge_in(400))
    assert cancel == {"type": "response.cancel", "response_id": "resp_1"}
    assert truncate == {"type": "conversation.item.truncate", "item_id": "item_1", "content_index": 0,
                        "audio_end_ms": 400}
    assert c.barge_in(400) == [json.dumps({"type": "response.cancel", "response_id": "resp_1"},
                                          separators=(",", ":"))]  # truncated once only
