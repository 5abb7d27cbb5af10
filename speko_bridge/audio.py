"""PCM16 framing and streaming resampling (PROTOCOL.md section 5).

One :class:`Resampler` per direction per session. Audio is PCM16 little-endian mono.

Why a float path: soxr's ``int16`` mode dithers its output, so the same stream chunked
two ways comes out different (by up to 2 LSB); the ``float32`` mode is deterministic and
chunking-invariant to the byte. We therefore convert int16 -> float32, resample, and
round back to int16 ourselves (round half to even, clipped). The conversion costs a few
microseconds per 20 ms frame and buys the property the contract promises: chunk
boundaries change nothing.

An odd trailing byte is carried into the next chunk, never dropped. ``flush()`` at the
end of a turn emits the filter's tail so no audio is lost, then starts a fresh stream.
"""

from __future__ import annotations

import numpy as np
import soxr

#: soxr quality. "HQ" (20-bit precision, ~96 dB stop-band) is far beyond 16-bit speech
#: needs and is soxr's default; "VHQ" costs more CPU for no audible gain on PCM16.
QUALITY = "HQ"
#: int16 full scale, for the float conversion.
_SCALE = 32768.0
_EMPTY_F32 = np.zeros(0, dtype=np.float32)


def pcm_ms(nbytes: int, rate: int) -> float:
    """Duration of ``nbytes`` of PCM16 mono at ``rate``, in milliseconds."""
    return nbytes * 500.0 / rate


def _to_pcm16(samples: np.ndarray) -> bytes:
    if samples.size == 0:
        return b""
    scaled = np.rint(samples * _SCALE)
    np.clip(scaled, -32768, 32767, out=scaled)
    return scaled.astype("<i2").tobytes()


class Resampler:
    """Streaming PCM16 resampler from ``in_rate`` to ``out_rate`` (passthrough if equal)."""

    __slots__ = ("in_rate", "out_rate", "passthrough", "_carry", "_stream")

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.passthrough = in_rate == out_rate
        self._carry = b""
        self._stream = None if self.passthrough else self._new_stream()

    def _new_stream(self) -> soxr.ResampleStream:
        return soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="float32", quality=QUALITY)

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
        data = self._frame(data)
        if self.passthrough or not data:
            return data
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32)
        samples *= 1.0 / _SCALE
        return _to_pcm16(self._stream.resample_chunk(samples))

    def flush(self) -> bytes:
        """End of turn: emit the tail held in the filter and start a fresh stream. A carried
        odd byte stays carried (it belongs to the next chunk the client sends)."""
        if self.passthrough:
            return b""
        tail = self._stream.resample_chunk(_EMPTY_F32, last=True)
        self._stream = self._new_stream()
        return _to_pcm16(tail)

    def reset(self) -> None:
        """Drop everything (filter history, tail and carried byte) without emitting: used
        when queued audio is discarded on interrupt."""
        self._carry = b""
        if not self.passthrough:
            self._stream = self._new_stream()
