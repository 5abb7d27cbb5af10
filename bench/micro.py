"""Micro benchmarks: resampler and codec cost per unit of work. Prints medians.

    .venv/bin/python bench/micro.py
"""

from __future__ import annotations

import base64
import json
import statistics
import time

import numpy as np

from speko_bridge.audio import Resampler, configure_soxr
from speko_bridge.params import SessionParams
from speko_bridge.providers.google import GoogleCodec
from speko_bridge.providers.openai import OpenAICodec
from speko_bridge.providers.xai import XAICodec

ROUNDS, PER_ROUND = 21, 2000


def configure(smoke: bool) -> None:
    global ROUNDS, PER_ROUND
    if smoke:
        ROUNDS, PER_ROUND = 3, 100


def per_call_us(fn) -> float:
    """Median over ROUNDS of the mean time of PER_ROUND calls, in microseconds."""
    samples = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        for _ in range(PER_ROUND):
            fn()
        samples.append((time.perf_counter() - t) / PER_ROUND * 1e6)
    return statistics.median(samples)


def codec_rows(frame16: bytes, frame24: bytes, audio100: str) -> list[tuple[str, float]]:
    """Per provider: one 20 ms client frame out, and one 100 ms audio message and one
    transcript fragment in, each as the provider really sends them (providers.md)."""
    ids = {"event_id": "event_1", "response_id": "resp_1", "item_id": "item_1", "output_index": 0,
           "content_index": 0}
    openai_audio = json.dumps({"type": "response.output_audio.delta", **ids, "delta": audio100})
    openai_text = json.dumps({"type": "response.output_audio_transcript.delta", **ids, "delta": "It's 21 degrees"})
    gemini_audio = json.dumps({"serverContent": {"modelTurn": {"parts": [{"inlineData": {
        "mimeType": "audio/pcm;rate=24000", "data": audio100}}]}}}).encode()
    gemini_text = json.dumps({"serverContent": {"outputTranscription": {"text": "It's 21 degrees"}}}).encode()
    xai_user = json.dumps({"type": "conversation.item.input_audio_transcription.updated", "item_id": "item_u1",
                           "content_index": 0, "transcript": "what's the weather in"})
    cases = [
        ("openai", OpenAICodec, "gpt-realtime", frame24, openai_audio, openai_text),
        ("google", GoogleCodec, "gemini-2.5-flash-native-audio-preview-12-2025", frame16, gemini_audio, gemini_text),
        ("xai", XAICodec, "grok-voice-latest", frame24, openai_audio, xai_user),
    ]
    rows = []
    for name, cls, model, frame, audio_msg, text_msg in cases:
        codec = cls(SessionParams(provider=name, model=model))
        rows += [
            (f"{name} codec: audio() 20 ms", per_call_us(lambda: codec.audio(frame))),
            (f"{name} codec: receive audio 100 ms", per_call_us(lambda: codec.receive(audio_msg))),
            (f"{name} codec: receive transcript", per_call_us(lambda: codec.receive(text_msg))),
        ]
    return rows


def rows() -> list[tuple[str, float]]:
    rng = np.random.default_rng(0)
    frame16 = rng.integers(-8000, 8000, 320, dtype=np.int16).tobytes()  # 20 ms at 16 kHz
    frame24 = rng.integers(-8000, 8000, 480, dtype=np.int16).tobytes()  # 20 ms at 24 kHz
    configure_soxr()  # the resamplers as a started server makes them
    up, down = Resampler(16000, 24000), Resampler(24000, 16000)
    out = [
        ("resample 20 ms 16k->24k", per_call_us(lambda: up.process(frame16))),
        ("resample 20 ms 24k->16k", per_call_us(lambda: down.process(frame24))),
    ]
    audio100 = base64.b64encode(rng.integers(-8000, 8000, 2400, dtype=np.int16).tobytes()).decode()
    return out + codec_rows(frame16, frame24, audio100)


def main() -> None:
    print(f"{'benchmark':44} {'median us/call':>14}")
    for name, us in rows():
        print(f"{name:44} {us:14.2f}")


if __name__ == "__main__":
    main()
