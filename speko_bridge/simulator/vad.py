"""Energy-based voice activity detection for the simulators, in audio time.

The providers' server VADs decide from the audio stream itself when the user starts and
stops speaking: OpenAI's ``server_vad`` takes ``threshold`` (0..1), ``prefix_padding_ms``
(default 300) and ``silence_duration_ms`` (default 500) (OpenAI Realtime guide, "Voice
activity detection"); Gemini's ``automaticActivityDetection`` takes start/end-of-speech
sensitivities, ``prefixPaddingMs`` and ``silenceDurationMs`` (google-genai
``types.AutomaticActivityDetection``). This detector does the same from the RMS energy of
20 ms frames, so a test that streams a tone, then silence, sees a start when the tone begins
and a stop ``silence_ms`` after it ends, exactly, whatever the chunking and however fast the
audio is sent (time is the audio's position, never the clock).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME_MS = 20
#: RMS of a full-scale PCM16 sine is 23170; the threshold (0..1) scales the detector's
#: floor between near silence and loud speech: 0.5 (OpenAI's default) is RMS ~ 1000
#: (-30 dBFS), well below conversational speech and well above room noise.
RMS_AT_THRESHOLD_1 = 2000.0
#: Voiced audio needed before a start is declared: a click is not speech.
MIN_SPEECH_MS = 60


@dataclass(slots=True)
class VadEvent:
    kind: str  # "start" | "stop"
    at_ms: int  # position in the input audio stream
    speech_ms: int = 0  # for "stop": the speech in the turn, prefix included


class EnergyVad:
    """Feed PCM16 mono; get start/stop events at their audio-stream positions."""

    def __init__(self, rate: int, threshold: float = 0.5, silence_ms: int = 500, prefix_ms: int = 300) -> None:
        self.rate = rate
        self.floor = max(1.0, threshold * RMS_AT_THRESHOLD_1)
        self.silence_ms = silence_ms
        self.prefix_ms = prefix_ms
        self._frame_bytes = 2 * rate * FRAME_MS // 1000
        self._carry = b""
        self.position_ms = 0
        self.speaking = False
        self._voiced_run = 0
        self._silent_run = 0
        self._start_ms = 0

    def feed(self, pcm: bytes) -> list[VadEvent]:
        data = self._carry + pcm
        n = len(data) // self._frame_bytes * self._frame_bytes
        self._carry = data[n:]
        events: list[VadEvent] = []
        if n == 0:
            return events
        frames = np.frombuffer(data[:n], dtype="<i2").astype(np.float64).reshape(-1, self._frame_bytes // 2)
        for rms in np.sqrt((frames ** 2).mean(axis=1)):
            self.position_ms += FRAME_MS
            voiced = rms >= self.floor
            if not self.speaking:
                self._voiced_run = self._voiced_run + FRAME_MS if voiced else 0
                if self._voiced_run >= MIN_SPEECH_MS:
                    self.speaking = True
                    self._silent_run = 0
                    began = self.position_ms - self._voiced_run
                    self._start_ms = max(0, began - self.prefix_ms)
                    events.append(VadEvent("start", began))
            else:
                self._silent_run = 0 if voiced else self._silent_run + FRAME_MS
                if self._silent_run >= self.silence_ms:
                    events.append(self.stop())
        return events

    def stop(self) -> VadEvent:
        """End the current speech now (the silence ran out, or the client flushed)."""
        self.speaking = False
        self._voiced_run = 0
        end = self.position_ms - self._silent_run
        self._silent_run = 0
        return VadEvent("stop", end, end - self._start_ms)
