"""A live microphone for end-to-end tests with real clients: speech-like audio, then the
silence a microphone keeps sending, in 20 ms chunks at the pace of real time.

A real client (the OpenAI Agents SDK, Mastra) streams whatever the microphone hears and lets
the server's voice activity detection end the turn: nothing is committed by hand, and the
audio keeps coming after the user falls silent. The simulators' detectors are energy based
(``speko_bridge.simulator.vad``), so "speech" here is a voiced signal well above their
threshold: a 140 Hz fundamental with harmonics (a male voice's pitch), its loudness rising
and falling at a syllable rate, never down to silence inside the utterance.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

RATE = 24000  # OpenAI's audio/pcm, what every OpenAI-protocol client sends
CHUNK_MS = 20  # a browser or PortAudio microphone delivers 10-40 ms buffers
PITCH_HZ = 140.0
SYLLABLES_HZ = 4.0  # about four syllables a second in conversational speech


def speech(seconds: float, rate: int = RATE) -> bytes:
    """Voiced, speech-like PCM16: RMS ~ 4000-6000, far above the simulators' VAD floor (~1000)."""
    t = np.arange(int(seconds * rate)) / rate
    voice = sum(np.sin(2 * np.pi * PITCH_HZ * k * t) / k for k in (1, 2, 3, 4))
    envelope = 0.7 + 0.3 * np.sin(2 * np.pi * SYLLABLES_HZ * t)
    return (6000 * envelope * voice).astype("<i2").tobytes()


def silence(seconds: float, rate: int = RATE) -> bytes:
    return bytes(2 * int(seconds * rate))


def chunks(pcm: bytes, rate: int = RATE):
    size = 2 * rate * CHUNK_MS // 1000
    for i in range(0, len(pcm), size):
        yield pcm[i:i + size]


class Microphone:
    """An open microphone: ``run()`` sends 20 ms chunks at real-time pace, silence unless
    ``say()`` queued speech, until cancelled."""

    def __init__(self, send, rate: int = RATE) -> None:
        self._send = send
        self._rate = rate
        self._queued: list[bytes] = []
        self.spoken_ms = 0  # speech sent so far

    def say(self, pcm: bytes) -> None:
        self._queued.extend(chunks(pcm, self._rate))

    async def run(self) -> None:
        start = time.monotonic()
        sent_ms = 0
        quiet = silence(CHUNK_MS / 1000, self._rate)
        while True:
            if self._queued:
                chunk = self._queued.pop(0)
                self.spoken_ms += CHUNK_MS
            else:
                chunk = quiet
            await self._send(chunk)
            sent_ms += CHUNK_MS
            delay = start + sent_ms / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)


async def live(send, pcm: bytes, rate: int = RATE) -> None:
    """``await send(chunk)`` for each 20 ms of ``pcm`` at its real-time pace, then (a microphone
    left open) silence until cancelled."""
    mic = Microphone(send, rate)
    mic.say(pcm)
    await mic.run()
