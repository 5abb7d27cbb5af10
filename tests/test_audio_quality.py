"""What a listener hears through the resampler at 16 <-> 24 kHz (issue 23, target 3): speech
up to 7 kHz keeps its level (within 0.5 dB), the upsampler adds nothing above the 16 kHz
input's Nyquist (images) and the downsampler lets nothing above the 16 kHz output's Nyquist
fold back into it (aliases), both below -90 dB. And what comes out is aligned with what
went in, so that the audio the resampler holds back (bounded with the other latency tests
in test_audio.py) is all the delay it adds.

Levels are measured on the PCM16 bytes the client or provider receives, against a tone at
90 % of full scale: PCM16 rounding puts a floor near -100 dB under any filter, so a tone
much quieter than full scale could not show -90 dB whatever the filter did."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speko_bridge.audio import Resampler, configure_soxr

UP, DOWN = (16000, 24000), (24000, 16000)
#: The passband a 16 kHz client needs flat: speech carries little above 7 kHz.
PASSBAND_HZ = 7000.0
PASSBAND_DB = 0.5
#: Images and aliases must stay below this, relative to the tone that made them.
STOPBAND_DB = -90.0
AMPLITUDE = 0.9 * 32767
#: Output trimmed at each end: the tone's sudden start and end are clicks, which are
#: broadband by nature and not what a steady tone measures.
SETTLE_S = 0.03
#: How far a speech-band tone may come out early or late against its input: a hundredth of
#: a 20 ms frame (soxr's minimum-phase recipe: 0.06 ms early).
ALIGNMENT_MS = 0.2


@pytest.fixture(autouse=True, scope="module")
def resamplers_as_a_server_makes_them():
    configure_soxr()


def tone(freq: float, rate: int, seconds: float, phase: float) -> np.ndarray:
    t = np.arange(int(rate * seconds))
    return np.rint(AMPLITUDE * np.sin(2 * np.pi * freq * t / rate + phase)).astype("<i2")


def resample(rates: tuple[int, int], samples: np.ndarray, frame_ms: int) -> np.ndarray:
    """Through one Resampler in ``frame_ms`` chunks, as a live session feeds it; settled part."""
    in_rate, out_rate = rates
    r = Resampler(in_rate, out_rate)
    data, step = samples.tobytes(), 2 * in_rate * frame_ms // 1000
    out = b"".join(r.process(data[i:i + step]) for i in range(0, len(data), step)) + r.flush()
    settle = int(out_rate * SETTLE_S)
    return np.frombuffer(out, dtype="<i2").astype(float)[settle:-settle]


def sine_fit(y: np.ndarray, freq: float, rate: int, start: int = 0) -> tuple[float, float]:
    """Least-squares amplitude and phase of the sine at ``freq`` in ``y``, whose first sample
    is sample ``start`` of its stream: ``y ~ a * sin(2 pi freq n / rate + phase)``."""
    t = np.arange(start, start + len(y))
    basis = np.stack([np.sin(2 * np.pi * freq * t / rate), np.cos(2 * np.pi * freq * t / rate)], 1)
    (s, c), *_ = np.linalg.lstsq(basis, y, rcond=None)
    return float(np.hypot(s, c)), float(np.arctan2(c, s))


def amplitude(y: np.ndarray, freq: float, rate: int) -> float:
    return sine_fit(y, freq, rate)[0]


def loudest_line_db(y: np.ndarray, rate: int, lo: float, hi: float) -> float:
    """The loudest spectral line of ``y`` between ``lo`` and ``hi`` Hz, in dB against the test
    tone. A Kaiser window (beta 20) keeps the tone's own leakage below -140 dB."""
    window = np.kaiser(len(y), 20.0)
    lines = np.abs(np.fft.rfft(y * window)) * 2 / window.sum()
    freqs = np.fft.rfftfreq(len(y), 1 / rate)
    band = lines[(freqs >= lo) & (freqs <= hi)]
    return float(20 * np.log10(max(band.max(), 1e-9) / AMPLITUDE))


@settings(max_examples=40, deadline=None)
@given(rates=st.sampled_from([UP, DOWN]), freq=st.floats(50.0, PASSBAND_HZ),
       phase=st.floats(0.0, 6.28), frame_ms=st.sampled_from([10, 20, 40]))
def test_speech_band_keeps_its_level(rates, freq, phase, frame_ms):
    in_rate, out_rate = rates
    src = tone(freq, in_rate, 0.25, phase)
    gain_db = 20 * np.log10(amplitude(resample(rates, src, frame_ms), freq, out_rate)
                            / amplitude(src.astype(float), freq, in_rate))
    assert abs(gain_db) <= PASSBAND_DB, (rates, freq, gain_db)


@settings(max_examples=40, deadline=None)
@given(freq=st.floats(8000.0, 11990.0), phase=st.floats(0.0, 6.28))
def test_a_tone_above_8_khz_does_not_fold_into_16_khz_audio(freq, phase):
    """Downsampling 24 -> 16 kHz: a tone the 16 kHz side cannot carry must vanish, not come
    back as a different, audible pitch (at 16000 - freq)."""
    out = resample(DOWN, tone(freq, 24000, 0.5, phase), 20)
    assert loudest_line_db(out, 16000, 0.0, 8000.0) < STOPBAND_DB, freq


@settings(max_examples=40, deadline=None)
@given(freq=st.floats(50.0, 7950.0), phase=st.floats(0.0, 6.28))
def test_upsampling_adds_nothing_above_8_khz(freq, phase):
    """Upsampling 16 -> 24 kHz: the input holds nothing above 8 kHz, so anything the output
    has there (a mirror image at 16000 - freq, say) is the filter's."""
    out = resample(UP, tone(freq, 16000, 0.5, phase), 20)
    assert loudest_line_db(out, 24000, 8000.0, 12000.0) < STOPBAND_DB, freq


@settings(max_examples=30, deadline=None)
@given(rates=st.sampled_from([UP, DOWN]), freq=st.floats(50.0, 400.0), phase=st.floats(0.0, 6.28))
def test_audio_comes_out_aligned_with_the_input(rates, freq, phase):
    """Output sample n is the input at time n / out_rate: a resampler that emitted every
    sample at once but delayed the signal inside them would hold back nothing by count and
    still make the listener wait (unambiguous: half a period of 400 Hz is 1.25 ms)."""
    in_rate, out_rate = rates
    out = resample(rates, tone(freq, in_rate, 0.25, phase), 20)
    _, out_phase = sine_fit(out, freq, out_rate, start=int(out_rate * SETTLE_S))
    late = (phase - out_phase + np.pi) % (2 * np.pi) - np.pi
    late_ms = late / (2 * np.pi * freq) * 1000
    assert abs(late_ms) <= ALIGNMENT_MS, (rates, freq, late_ms)
