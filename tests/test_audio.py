"""Resampler invariants (docs/protocol.md section 6): chunk boundaries change nothing, no sample
is lost or duplicated, and the signal survives."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import aiohttp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speko_bridge.audio import Resampler, configure_soxr, pcm_ms

from .conftest import base_env, run_bridge

RATES = [(16000, 24000), (24000, 16000), (24000, 24000), (16000, 16000)]
SOXR_VARIABLE = "SOXR_LARGE_DFT_SIZE"


@pytest.fixture(autouse=True, scope="module")
def resamplers_as_a_server_makes_them():
    """A started server applies configure_soxr() before its first session; so do these tests
    (the latency bound below depends on it)."""
    configure_soxr()


def pcm(samples: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return rng.integers(-32768, 32767, samples, dtype=np.int16).astype("<i2").tobytes()


def stream(r: Resampler, chunks) -> bytes:
    return b"".join(r.process(c) for c in chunks) + r.flush()


def split(data: bytes, cuts: list[int]):
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:])]


@settings(max_examples=60, deadline=None)
@given(rates=st.sampled_from(RATES), samples=st.integers(0, 6000), seed=st.integers(0, 2**32 - 1),
       cuts=st.lists(st.integers(0, 20000), max_size=40))
def test_any_chunking_gives_the_same_bytes(rates, samples, seed, cuts):
    data = pcm(samples, seed)
    whole = stream(Resampler(*rates), [data])
    pieces = stream(Resampler(*rates), split(data, cuts))  # cuts at odd offsets too
    assert pieces == whole


@settings(max_examples=60, deadline=None)
@given(rates=st.sampled_from(RATES), samples=st.integers(0, 20000), seed=st.integers(0, 2**32 - 1))
def test_length_is_exact_after_flush(rates, samples, seed):
    in_rate, out_rate = rates
    out = stream(Resampler(in_rate, out_rate), [pcm(samples, seed)])
    assert len(out) % 2 == 0
    expected = samples * out_rate / in_rate
    assert abs(len(out) // 2 - expected) <= 1, (len(out) // 2, expected)


@settings(max_examples=30, deadline=None)
@given(rates=st.sampled_from(RATES[:2]), a=st.integers(1, 4000), b=st.integers(1, 4000),
       seed=st.integers(0, 2**32 - 1))
def test_each_turn_starts_clean_after_flush(rates, a, b, seed):
    first, second = pcm(a, seed), pcm(b, seed + 1)
    r = Resampler(*rates)
    stream(r, [first])
    assert stream(r, [second]) == stream(Resampler(*rates), [second])


@settings(max_examples=30, deadline=None)
@given(rates=st.sampled_from(RATES[:2]), a=st.integers(1, 4000), b=st.integers(1, 4000),
       seed=st.integers(0, 2**32 - 1), cuts=st.lists(st.integers(0, 8000), max_size=10))
def test_a_flush_that_renews_with_the_next_chunk_is_the_same_as_one_that_renews_at_once(
        rates, a, b, seed, cuts):
    """The commit's flush (client side) makes the next stream only when the next chunk
    comes: the tail, the next turn and a flush with nothing new are all the same bytes."""
    first, second = pcm(a, seed), pcm(b, seed + 1)
    now, later = Resampler(*rates), Resampler(*rates)
    for r in (now, later):
        for chunk in split(first, cuts):
            r.process(chunk)
    assert later.flush(renew=False) == now.flush()
    assert later.flush(renew=False) == now.flush() == b""  # nothing since: no tail, twice
    out_later = b"".join(later.process(c) for c in split(second, cuts)) + later.flush(renew=False)
    out_now = b"".join(now.process(c) for c in split(second, cuts)) + now.flush()
    assert out_later == out_now == stream(Resampler(*rates), [second])


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=30))
def test_passthrough_keeps_every_byte_including_odd_splits(data, cuts):
    r = Resampler(24000, 24000)
    out = b"".join(r.process(c) for c in split(data, cuts))
    whole_samples = len(data) - len(data) % 2
    assert out == data[:whole_samples]
    # the odd byte is carried, not dropped: the next chunk completes the sample
    if len(data) % 2:
        assert r.process(b"\x7f") == data[-1:] + b"\x7f"


def test_odd_byte_is_carried_across_chunks_when_resampling():
    data = pcm(1600, 7)
    r = Resampler(16000, 24000)
    out = r.process(data[:1]) + r.process(data[1:999]) + r.process(data[999:]) + r.flush()
    assert out == stream(Resampler(16000, 24000), [data])


def sine(freq: float, rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def test_tone_keeps_its_pitch_and_loudness():
    src = sine(440.0, 16000, 1.0)
    out = np.frombuffer(stream(Resampler(16000, 24000), [src.tobytes()]), dtype="<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    peak_hz = np.argmax(spectrum) * 24000 / len(out)
    assert abs(peak_hz - 440.0) < 2
    core = slice(2400, -2400)  # away from the filter's edges
    rms_in = np.sqrt(np.mean(src.astype(float)[1600:-1600] ** 2))
    rms_out = np.sqrt(np.mean(out[core] ** 2))
    assert abs(rms_out / rms_in - 1) < 0.01


def test_reset_discards_history_and_empty_input_gives_nothing():
    r = Resampler(16000, 24000)
    assert r.process(b"") == b""
    r.process(pcm(800, 1) + b"\x01")
    r.reset()
    data = pcm(800, 2)
    assert stream(r, [data]) == stream(Resampler(16000, 24000), [data])


def test_pcm_ms():
    assert pcm_ms(960, 24000) == 20.0 and pcm_ms(640, 16000) == 20.0


#: Issue 23: a resampler holds back at most 3 ms of audio on average per direction. The
#: worst moment is set by soxr's DFT block (2^8 points): 4.75 ms measured.
HELD_BACK_MEAN_MS = 3.0
HELD_BACK_WORST_MS = 5.0


def held_back_ms(in_rate: int, out_rate: int, frame_ms: int, seed: int = 1,
                 frames: int = 60) -> np.ndarray:
    """After each chunk: the audio its input promised so far minus the audio that came out,
    in milliseconds (bench/micro.py measures the same way)."""
    r = Resampler(in_rate, out_rate)
    n = in_rate * frame_ms // 1000
    data = pcm(n * frames, seed)
    produced, lags = 0, []
    for k in range(frames):
        produced += len(r.process(data[2 * n * k: 2 * n * (k + 1)])) // 2
        lags.append((k + 1) * n * out_rate // in_rate - produced)
    return np.array(lags) * 1000 / out_rate


@settings(max_examples=20, deadline=None)
@given(rates=st.sampled_from(RATES[:2]), frame_ms=st.sampled_from([10, 20, 40, 100]),
       seed=st.integers(0, 2**32 - 1))
def test_live_audio_is_held_back_3_ms_on_average_and_never_more_than_5(rates, frame_ms, seed):
    """A listener hears a chunk's audio when the chunk arrives, not a burst later: for any
    chunk size a browser uses, the resampler holds back under 3 ms of audio on average and
    5 ms at worst (soxr's throughput defaults: 21 ms and 37 ms; its 16-bit recipe: 6.0 and
    11.5 ms)."""
    lags = held_back_ms(*rates, frame_ms, seed)
    assert lags.mean() <= HELD_BACK_MEAN_MS, lags.mean()
    assert lags.max() <= HELD_BACK_WORST_MS, lags.max()


def worst_held_back_ms(in_rate: int = 16000, out_rate: int = 24000, frame_ms: int = 20) -> float:
    return float(held_back_ms(in_rate, out_rate, frame_ms).max())


def test_importing_the_audio_module_or_the_server_leaves_the_environment_alone():
    code = ("import os, json; before = dict(os.environ); import speko_bridge.audio, speko_bridge.app; "
            "print(json.dumps({k: v for k, v in os.environ.items() if before.get(k) != v}))")
    env = {k: v for k, v in os.environ.items() if k != SOXR_VARIABLE}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {}


async def test_a_started_server_sets_the_soxr_block_size(tmp_path, monkeypatch):
    monkeypatch.delenv(SOXR_VARIABLE, raising=False)
    async with run_bridge(base_env(tmp_path)) as bridge:
        async with aiohttp.ClientSession() as http:
            async with http.get(bridge.base + "/healthz") as r:
                assert r.status == 200
        assert os.environ.get(SOXR_VARIABLE) == "8"
        assert worst_held_back_ms() <= HELD_BACK_WORST_MS  # soxr's own default block: 15 ms here


async def test_an_operators_own_soxr_setting_wins(tmp_path, monkeypatch):
    monkeypatch.setenv(SOXR_VARIABLE, "17")  # libsoxr's default block size, set explicitly
    async with run_bridge(base_env(tmp_path)):
        assert os.environ[SOXR_VARIABLE] == "17"
        assert worst_held_back_ms() > HELD_BACK_WORST_MS


def square(freq: int, rate: int, seconds: float) -> np.ndarray:
    """A full-scale square wave: every sample at +32767 or -32768."""
    t = np.arange(int(rate * seconds))
    return np.where((t * freq // rate) % 2 == 0, 32767, -32768).astype("<i2")


def test_full_scale_audio_is_clipped_after_resampling_not_wrapped():
    """A full-scale square wave rings past full scale in the filter (to about +-50,000 at
    16 <-> 24 kHz). Those samples must come out at the rails: wrapped to int16 instead, a
    peak turns into a full-scale sample of the other sign, a loud click."""
    for in_rate, out_rate in RATES[:2]:
        src = square(200, in_rate, 0.5)
        edges = np.count_nonzero(np.diff(np.sign(src)))
        out = np.frombuffer(stream(Resampler(in_rate, out_rate), [src.tobytes()]), dtype="<i2")
        assert out.max() == 32767 and out.min() == -32768  # held at the rails, not scaled down
        signs = np.sign(out[out != 0])
        assert np.count_nonzero(np.diff(signs)) == edges, (in_rate, out_rate)  # no sign flips but the edges
