"""A spoken turn from Python: mint and connect in one call, send speech, hear the reply.

    export SPEKO_KEY=sk_dev_...        # the key `make run` prints
    .venv/bin/python examples/conversation.py [speech.wav] [--provider google]

Sends the WAV file (mono PCM16 at 16 or 24 kHz), or one second of a generated tone when
none is given, ends the turn with commit, prints the transcripts as they stream and saves
the assistant's audio to reply.wav. With the built-in simulators the reply is "You spoke
for 1.0 seconds.": the simulator measures what it heard.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import struct
import wave

from speko_bridge.client import Speko
from speko_bridge.frames import Audio, Close, Error, Transcript, Usage

MODELS = {"openai": "gpt-realtime", "google": "gemini-2.5-flash-native-audio-preview-12-2025", "xai": "grok-voice-latest"}


def speech(path: str | None) -> tuple[bytes, int]:
    if path is None:  # one second of a 220 Hz tone at 16 kHz
        rate = 16000
        return struct.pack(f"<{rate}h", *(int(9000 * math.sin(2 * math.pi * 220 * i / rate)) for i in range(rate))), rate
    with wave.open(path, "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getframerate() not in (16000, 24000):
            raise SystemExit(f"{path}: need mono 16-bit PCM at 16000 or 24000 Hz")
        return w.readframes(w.getnframes()), w.getframerate()


async def main(wav: str | None, provider: str, out: str) -> None:
    pcm, rate = speech(wav)
    reply = bytearray()
    async with Speko() as speko:  # SPEKO_URL (default http://127.0.0.1:8000) and SPEKO_KEY
        async with speko.realtime.connect(provider=provider, model=MODELS[provider],
                                          input_sample_rate=rate, output_sample_rate=24000) as session:
            print(f"connected: {session.session_id} ({session.session.provider}, {session.session.model})")
            for i in range(0, len(pcm), rate // 50 * 2):  # 20 ms chunks, as a microphone would send
                await session.send_audio(pcm[i:i + rate // 50 * 2])
            await session.commit()
            async for frame in session:
                if isinstance(frame, Audio):
                    reply += frame.pcm
                elif isinstance(frame, Transcript) and frame.final:
                    print(f"{frame.role}: {frame.text}")
                elif isinstance(frame, Error):
                    print(f"error {frame.code}: {frame.message}")
                elif isinstance(frame, Usage):  # one usage frame ends every response
                    print(f"usage: {frame.input_audio_tokens} audio tokens in, {frame.output_audio_tokens} out")
                    break
                elif isinstance(frame, Close):
                    break
        print(f"closed: {session.close_code} {session.close_reason}".rstrip())
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24000)
        w.writeframes(bytes(reply))
    print(f"reply: {len(reply) / 2 / 24000:.1f} s of audio in {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("wav", nargs="?", help="mono PCM16 WAV at 16 or 24 kHz (default: a generated tone)")
    parser.add_argument("--provider", default="openai", choices=sorted(MODELS))
    parser.add_argument("--out", default="reply.wav")
    args = parser.parse_args()
    asyncio.run(main(args.wav, args.provider, args.out))
