"""Reading a client no faster than it can honestly speak (sans-IO: the caller passes the clock).

A client could otherwise push an hour of audio in seconds (the provider bills all of it; a
session's ``ttlSeconds`` bounds its wall time, not its cost) or flood tiny messages that keep
a core busy while every other session on the replica waits. So the client reader asks
:meth:`Pacer.wait` after each message how long to pause before reading the next one; while it
pauses, nothing is read, the server's receive queue fills, and TCP pushes back on the client.
Nothing is dropped.

- **Audio**: at most real time plus ``burst_seconds`` ahead of the session's clock
  (``SPEKO_AUDIO_BURST_SECONDS``, default 10 s: a client may send a recorded clip that fast,
  or catch up after a stall).
- **Messages**: a token bucket of ``messages_per_second`` (``SPEKO_CLIENT_MESSAGES_PER_SECOND``,
  default 500: an AudioWorklet posting every 128-sample block at 48 kHz sends 375 a second),
  holding one second's worth.
"""

from __future__ import annotations


class Pacer:
    __slots__ = ("_bytes_per_second", "_burst", "_start", "_audio", "_rate", "_tokens", "_last")

    def __init__(self, input_rate: int, burst_seconds: float, messages_per_second: float, now: float) -> None:
        self._bytes_per_second = 2 * input_rate
        self._burst = burst_seconds
        self._start = now
        self._audio = 0.0  # seconds of audio read so far
        self._rate = messages_per_second
        self._tokens = messages_per_second
        self._last = now

    def wait(self, now: float, audio_bytes: int) -> float:
        """One message was read, carrying ``audio_bytes`` of PCM16 at the input rate: how many
        seconds to pause before reading the next (0 when within both allowances)."""
        tokens = min(self._rate, self._tokens + (now - self._last) * self._rate) - 1.0
        self._tokens = tokens
        self._last = now
        wait = -tokens / self._rate if tokens < 0 else 0.0
        if audio_bytes:
            self._audio += audio_bytes / self._bytes_per_second
            ahead = self._audio - (now - self._start) - self._burst
            if ahead > wait:
                wait = ahead
        return wait
