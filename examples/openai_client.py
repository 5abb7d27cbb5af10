"""Existing OpenAI Realtime code on the bridge: the official ``openai`` SDK, three changes.

    pip install openai                 # in .venv: .venv/bin/pip install openai
    export SPEKO_KEY=sk_dev_...
    .venv/bin/python examples/openai_client.py [--provider google]

1. your backend mints a session as usual; 2. the minted token goes where the OpenAI key
went; 3. the bridge's ``/v1/openai`` goes where OpenAI's URL went. From there on it is
OpenAI's own API, whichever provider answers (the minted session names it).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import math
import struct
from urllib.parse import urlsplit

from openai import AsyncOpenAI

from speko_bridge.client import Speko

MODELS = {"openai": "gpt-realtime", "google": "gemini-2.5-flash-native-audio-preview-12-2025", "xai": "grok-voice-latest"}
RATE = 24000  # OpenAI's audio/pcm: PCM16 at 24 kHz both ways


async def main(provider: str) -> None:
    async with Speko() as speko:  # 1. mint (SPEKO_URL, SPEKO_KEY)
        session = await speko.create_session(provider=provider, model=MODELS[provider])
    bridge = urlsplit(session.url)  # ws(s)://host/v1/realtime -> ws(s)://host/v1/openai
    client = AsyncOpenAI(api_key=session.token,  # 2. the token where the key was
                         websocket_base_url=f"{bridge.scheme}://{bridge.netloc}/v1/openai")  # 3. the bridge
    tone = struct.pack(f"<{RATE}h", *(int(9000 * math.sin(2 * math.pi * 220 * i / RATE)) for i in range(RATE)))
    async with client.realtime.connect(model="gpt-realtime") as conn:  # unchanged from here on
        await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": None}}})
        await conn.input_audio_buffer.append(audio=base64.b64encode(tone).decode())
        await conn.input_audio_buffer.commit()
        await conn.response.create()
        audio = 0
        async for event in conn:
            if event.type == "error":
                raise SystemExit(f"error: {event.error}")
            if event.type == "conversation.item.input_audio_transcription.completed":
                print(f"user: {event.transcript}")
            elif event.type == "response.output_audio.delta":
                audio += len(base64.b64decode(event.delta))
            elif event.type == "response.output_audio_transcript.done":
                print(f"assistant: {event.transcript}")
            elif event.type == "response.done":
                print(f"response.done: {audio / 2 / RATE:.1f} s of audio, "
                      f"{event.response.usage.output_token_details.audio_tokens} audio tokens")
                break


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--provider", default="openai", choices=sorted(MODELS))
    asyncio.run(main(parser.parse_args().provider))
