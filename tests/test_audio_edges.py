"""Resampler edges a listener would hear: a steady level must come out as exactly that
level (rounded, not truncated towards zero), a full-scale signal must be clipped and never
wrap round to the opposite sign, and the shortest turn still gets its samples. Found by
``make mutants`` (docs/testing.md)."""

from __future__ import annotations

import numpy as np
import pytest

from speko_bridge.audio import Resampler

CONVERTING = [(16000, 24000), (24000, 16000)]


def pcm(samples) -> bytes:
    return np.asarray(samples, dtype="<i2").tobytes()


def resample(rates: tuple[int, int], data: bytes) -> np.ndarray:
    r = Resampler(*rates)
    return np.frombuffer(r.process(data) + r.flush(), dtype="<i2")


@pytest.mark.parametrize("rates", CONVERTING)
@pytest.mark.parametrize("level", [1000, -1000, 12345, -12345, 7, -7])
def test_a_steady_level_comes_out_exactly(rates, level):
    """The filter's float output wobbles a few thousandths around the level; rounding gives
    the level back, truncation would lose one step on every other sample."""
    out = resample(rates, pcm([level] * 4800))
    settled = out[300:-300]  # away from the filter's start-up and tail
    assert len(settled) > 1000
    assert np.all(settled == level), np.unique(settled)


@pytest.mark.parametrize("rates", CONVERTING)
def test_full_scale_square_wave_is_clipped_not_wrapped(rates):
    """A full-scale square wave overshoots after resampling (Gibbs ringing, to about
    +-53,000 at 16 -> 24 kHz): it must stick at +-32767/-32768, not wrap to the other sign."""
    period = 240  # a whole number of output samples per half period at both ratios
    square = np.where((np.arange(48 * period) // (period // 2)) % 2 == 0, 32767, -32768)
    out = resample(rates, pcm(square)).astype(np.int32)
    ratio = rates[1] / rates[0]
    half = int(period // 2 * ratio)
    assert out.max() == 32767 and out.min() == -32768  # the overshoot was clipped
    # inside every plateau (away from the edges' ringing onsets) the sign is the input's
    for k in range(2, len(out) // half - 2):
        plateau = out[k * half + half // 4: (k + 1) * half - half // 4]
        expected_positive = k % 2 == 0
        assert np.all(plateau > 0) if expected_positive else np.all(plateau < 0), (k, plateau.min(), plateau.max())


@pytest.mark.parametrize("rates,samples_in,samples_out", [
    ((24000, 16000), 1, 1), ((24000, 16000), 2, 1), ((16000, 24000), 1, 2), ((48000, 16000), 2, 1),
])
def test_the_shortest_turn_still_gets_its_samples(rates, samples_in, samples_out):
    """A turn of one or two samples is flushed as the resampled length, not dropped."""
    out = resample(rates, pcm([1000] * samples_in))
    assert len(out) == samples_out
