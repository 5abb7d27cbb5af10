"""PCM16 framing and streaming resampling (docs/protocol.md section 6).

One :class:`Resampler` per direction per session. Audio is PCM16 little-endian mono.

Why a float path: soxr's ``int16`` mode dithers its output, so the same stream chunked
two ways comes out different (by up to 2 LSB); the ``float32`` mode is deterministic and
chunking-invariant to the byte. We therefore convert int16 -> float32, resample, and
round back to int16 ourselves (round half to even, clipped). The conversion costs a few
microseconds per 20 ms frame and buys the property the contract promises: chunk
boundaries change nothing.

An odd trailing byte is carried into the next chunk, never dropped. ``flush()`` at the
end of a turn emits the filter's tail so no audio is lost, then starts a fresh stream.

Latency. soxr's defaults are tuned for throughput on long files: a linear-phase filter run
through DFT blocks of up to 2^17 points. Fed 20 ms chunks, that holds back 21 ms of audio
on average and 37 ms at worst, per direction, and releases it in bursts. For live speech
we cap the large DFT at 2^8 points through libsoxr's runtime setting
``SOXR_LARGE_DFT_SIZE`` (read by ``soxr_create``; :func:`configure_soxr` sets it when a server
starts, not this module's import: importing a module must not change the environment of
the process that imports it) and ask for a minimum-phase filter (its energy comes first;
inaudible on speech).

Which filter. What a listener needs at 16 <-> 24 kHz: flat to 7 kHz (within 0.5 dB),
images (16 -> 24) and aliases (24 -> 16) below -90 dB, and as little audio held back as
possible. python-soxr passes libsoxr a recipe number only (``soxr_quality_spec(recipe,
flags)``: no passband or stop-band edge of our own), so we measured the recipes with
minimum phase, fed 20 ms chunks (``bench/micro.py`` prints the MQ and LSR1Q rows and says
how each figure is measured; held back = the audio the input promised so far minus the
audio out, in ms, mean / worst over 100 chunks; what does come out is aligned with its
input within 0.06 ms, so that is all the delay):

==========================  ===========  ===========  ========  ========
recipe (minimum phase)      held back    7 kHz level  images    aliases
==========================  ===========  ===========  ========  ========
``SOXR_LQ``                 1.5 / 2.75   -12.8 dB     -104 dB   -103 dB
``SOXR_MQ`` (until now)     6.05 / 11.5  0.00 dB      -102 dB   -103 dB
``SOXR_LSR1Q`` (this one)   2.48 / 4.75  -0.33 dB     -104 dB   -110 dB
==========================  ===========  ===========  ========  ========

``SOXR_LSR1Q`` is libsoxr's stand-in for libsamplerate's "medium sinc": 19-bit precision
(stop band at -114 dB from the lower rate's Nyquist, 8 kHz), flat to 0.832 of that
Nyquist (6.7 kHz; -0.33 dB at 7 kHz). MQ spends its filter length on keeping 7.0-7.5 kHz
flat, which speech does not need; LSR1Q's wider transition band makes the filter shorter,
and with DFT blocks of 2^8 points that is 2.48 ms held back on average (4.75 ms at worst)
per direction instead of 6.05 (11.5). The other recipes hold back more (16-bit as MQ,
LSR0Q 12.9 ms) and so does intermediate phase (MQ: 20 ms). A short polyphase filter of our
own for the fixed 3:2 ratio was the alternative; soxr meets the targets, so we keep the
library. Images and aliases sit at the floor of the measurement (PCM16 output rounding of
a tone at 90 % of full scale), not at the filter's -114 dB.

CPU per 20 ms chunk (``bench/micro.py`` times both recipes side by side, conversions
included): alone, in cache, LSR1Q costs ~0.5 us more than MQ (of ~9 us); among 100 streams
fed in turn, as 50 sessions at 16 kHz use them, 0.2-1.3 us less (of 14-20 us), its state
being smaller (47 against 58 KiB per stream). Filter design at stream creation costs the
same (~0.3 ms, once per direction per session and after each turn's flush; the client
side's flush at a ``commit`` leaves it to the next chunk, :meth:`Resampler.flush`, which
took 0.4 ms off a 16 kHz turn's median ``commit`` -> first audio: 2.13 against 2.55 ms,
50 sessions, six runs each alternating with the commit before it).

soxr.h lists the ``LSR`` recipes as "reserved for internal use": python-soxr bundles its own
libsoxr (pyproject.toml bounds the release), and tests/test_audio_quality.py and the
held-back test in tests/test_audio.py fail if a release changes what this recipe does.
Other rates (a provider's mimeType may name one) get the same recipe: its edges are
relative to the lower rate's Nyquist. Chunking-invariance above is unchanged: the recipe
changes the filter, not the float path.
"""

from __future__ import annotations

import os

import numpy as np
from soxr import soxr_ext

#: libsoxr recipe bits (soxr.h): SOXR_LSR1Q (19-bit precision, passband to 0.832 of the
#: lower Nyquist) with SOXR_MINIMUM_PHASE; the module docstring says why. python-soxr's
#: ``ResampleStream`` only takes the plain recipe names, so the stream is built on its
#: ``CSoxr`` core with the combined value.
SOXR_LSR1Q = 9
SOXR_MINIMUM_PHASE = 0x30
QUALITY = SOXR_LSR1Q | SOXR_MINIMUM_PHASE
#: log2 of the largest DFT libsoxr may use per block (its default is 17): smaller blocks
#: mean audio leaves the filter as soon as it can. Applied by :func:`configure_soxr`.
LARGE_DFT_SIZE_LOG2 = "8"
LARGE_DFT_SIZE_VARIABLE = "SOXR_LARGE_DFT_SIZE"
_FLOAT32 = soxr_ext.soxr_datatype_t.SOXR_FLOAT32_I
#: PCM16 limits as float32 scalars (numpy's ufuncs are 3x faster with typed scalars than
#: with Python ints or ``np.clip``, which matters at 50 frames a second per session).
_HI = np.float32(32767)
_LO = np.float32(-32768)
_EMPTY_F32 = np.zeros((0, 1), dtype=np.float32)
#: dtype objects made once: numpy parses a dtype string on every call that is given one
#: (~0.1 us each, twice per chunk).
_PCM16 = np.dtype("<i2")
_F32 = np.dtype(np.float32)


def configure_soxr() -> None:
    """Ask libsoxr for small DFT blocks (the module docstring says why), unless the operator
    set ``SOXR_LARGE_DFT_SIZE`` themselves: their setting wins. libsoxr reads the variable
    each time a stream is created, so this applies to every :class:`Resampler` made after
    it. Called when a server starts (``app.create_app``, which ``speko-bridge serve`` and
    the bench harness go through); a program that uses :class:`Resampler` alone and wants
    the same latency calls it first (``bench/micro.py`` does)."""
    os.environ.setdefault(LARGE_DFT_SIZE_VARIABLE, LARGE_DFT_SIZE_LOG2)


def pcm_ms(nbytes: int, rate: int) -> float:
    """Duration of ``nbytes`` of PCM16 mono at ``rate``, in milliseconds."""
    return nbytes * 500.0 / rate


def _to_pcm16(samples: np.ndarray) -> bytes:
    """Round (half to even) and clip soxr's float output, in place, to PCM16 bytes."""
    if samples.size == 0:
        return b""
    np.rint(samples, out=samples)
    np.minimum(samples, _HI, out=samples)
    np.maximum(samples, _LO, out=samples)
    return samples.astype(_PCM16).tobytes()


class Resampler:
    """Streaming PCM16 resampler from ``in_rate`` to ``out_rate`` (passthrough if equal)."""

    __slots__ = ("in_rate", "out_rate", "passthrough", "_carry", "_stream")

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.passthrough = in_rate == out_rate
        self._carry = b""
        self._stream = None if self.passthrough else self._new_stream()

    def _new_stream(self) -> soxr_ext.CSoxr:
        return soxr_ext.CSoxr(self.in_rate, self.out_rate, 1, _FLOAT32, QUALITY, False)

    def _frame(self, data: bytes) -> bytes:
        """Join the carried byte, keep a new odd byte back; return whole samples."""
        if self._carry:
            data = self._carry + data
            self._carry = b""
        if len(data) & 1:
            self._carry = data[-1:]
            data = data[:-1]
        return data

    def process(self, data: bytes) -> bytes:
        """Resample one chunk of any length; returns PCM16 at ``out_rate`` (maybe empty)."""
        if self._carry or len(data) & 1:  # whole samples, no carry: the usual 20 ms chunk
            data = self._frame(data)
        if self.passthrough or not data:
            return data
        stream = self._stream
        if stream is None:  # flushed with renew=False: this chunk starts the next stream
            stream = self._stream = self._new_stream()
        # Resampling is linear, so the samples go through at their int16 scale: no
        # normalising multiply on the way in or out.
        samples = np.frombuffer(data, dtype=_PCM16).astype(_F32).reshape(-1, 1)
        return _to_pcm16(stream.process_float32(samples, False))

    def flush(self, renew: bool = True) -> bytes:
        """End of turn: emit the tail held in the filter and start a fresh stream, at once
        or (``renew=False``) when the next chunk comes. Making a stream designs its filter,
        ~0.3 ms: a ``commit`` should not wait for that before it goes upstream, so the
        client's side renews later; the provider's side renews at once, at the end of a
        reply, so that the next reply's first chunk does not wait for it. (libsoxr's own
        reset, ``CSoxr.clear()``, would cost 0.1 us, but with this recipe the next
        ``process`` after it crashes the process: python-soxr 1.1.) A carried odd byte stays
        carried (it belongs to the next chunk the client sends)."""
        if self.passthrough or self._stream is None:
            return b""
        tail = self._stream.process_float32(_EMPTY_F32, True)
        self._stream = self._new_stream() if renew else None
        return _to_pcm16(tail)

    def reset(self) -> None:
        """Drop everything (filter history, tail and carried byte) without emitting: used
        when queued audio is discarded on interrupt."""
        self._carry = b""
        if not self.passthrough:
            self._stream = self._new_stream()
