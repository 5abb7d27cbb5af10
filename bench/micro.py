"""Micro benchmarks: resampler and codec cost per unit of work. Prints medians.

    .venv/bin/python bench/micro.py
"""

from __future__ import annotations

import base64
import json
import statistics
import time

import numpy as np

from speko_bridge.audio import Resampler
from speko_bridge.params import SessionParams
from speko_bridge.providers.openai import OpenAICodec

ROUNDS, PER_ROUND = 21, 2000


def per_call_us(fn) -> float:
    """Median over ROUNDS of the mean time of PER_ROUND calls, in microseconds."""
    samples = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        for _ in range(PER_ROUND):
            fn()
        samples.append((time.perf_counter() - t) / PER_ROUND * 1e6)
    return statistics.median(samples)


def main() -> None:
    rng = np.random.default_rng(0)
    frame16 = rng.integers(-8000, 8000, 320, dtype=np.int16).tobytes()  # 20 ms at 16 kHz
    frame24 = rng.integers(-8000, 8000, 480, dtype=np.int16).tobytes()  # 20 ms at 24 kHz
    up, down = Resampler(16000, 24000), Resampler(24000, 16000)
    rows = [
        ("resample 20 ms 16k->24k", per_call_us(lambda: up.process(frame16))),
        ("resample 20 ms 24k->16k", per_call_us(lambda: down.process(frame24))),
    ]
    codec = OpenAICodec(SessionParams(provider="openai", model="gpt-realtime"))
    delta100 = json.dumps({"type": "response.output_audio.delta", "event_id": "event_1", "response_id": "resp_1",
                           "item_id": "item_1", "output_index": 0, "content_index": 0,
                           "delta": base64.b64encode(rng.integers(-8000, 8000, 2400, dtype=np.int16).tobytes()).decode()})
    tdelta = json.dumps({"type": "response.output_audio_transcript.delta", "event_id": "event_2",
                         "response_id": "resp_1", "item_id": "item_1", "output_index": 0, "content_index": 0,
                         "delta": "It's 21 degrees"})
    rows += [
        ("openai codec: audio() 20 ms", per_call_us(lambda: codec.audio(frame24))),
        ("openai codec: receive audio delta 100 ms", per_call_us(lambda: codec.receive(delta100))),
        ("openai codec: receive transcript delta", per_call_us(lambda: codec.receive(tdelta))),
    ]
    print(f"{'benchmark':44} {'median us/call':>14}")
    for name, us in rows:
        print(f"{name:44} {us:14.2f}")


if __name__ == "__main__":
    main()
