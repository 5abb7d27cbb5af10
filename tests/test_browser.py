"""The demo page in a real browser: Debian's chromium driven by Playwright, a fake microphone
fed from a WAV file, the real server (dev mode) with the provider simulators behind it.

Press to talk, release, and the page must show both transcripts, receive and play the
assistant's audio, and close cleanly. A screenshot is saved under the test's temp dir."""

from __future__ import annotations

import math
import shutil
import struct
import wave
from pathlib import Path

import pytest

from .conftest import run_bridge

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="chromium missing: `make test` installs it with apt")

# Without the background-networking flags chromium keeps dialling Google on this closed network.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]


def speech_wav(path: Path, seconds: float = 4.0, rate: int = 48000) -> Path:
    n = int(seconds * rate)
    frames = struct.pack(f"<{n}h", *(int(9000 * math.sin(2 * math.pi * 220 * i / rate)) for i in range(n)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


@pytest.mark.parametrize("provider,rates,tools", [("openai", ("16000", "24000"), True),
                                                  ("google", ("24000", "16000"), False)])
async def test_demo_page_talks_through_the_bridge(env, tmp_path, provider, rates, tools):
    from playwright.async_api import async_playwright

    wav = speech_wav(tmp_path / "mic.wav")
    env = {**env, "SPEKO_DEV": "1"}  # the demo page, its dev mint, and the simulators
    async with run_bridge(env) as bridge, async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}"])
        try:
            page = await browser.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.on("response", lambda r: r.status >= 400 and console.append(f"http {r.status}: {r.url}"))
            await page.goto(bridge.base + "/")
            await page.select_option("#provider", provider)
            await page.select_option("#inRate", rates[0])
            await page.select_option("#outRate", rates[1])
            if tools:
                await page.check("#tools")
            await page.dispatch_event("#talk", "pointerdown")
            await page.wait_for_function("() => window.spekoDemo.chunksSent >= 50", timeout=10000)  # >= 1 s of mic
            await page.dispatch_event("#talk", "pointerup")

            if tools:  # the model calls get_weather; answer it from the page's box
                await page.wait_for_selector(".tool button", timeout=15000)
                assert "Paris" in await page.text_content(".tool code")
                await page.click(".tool button")
            await page.wait_for_selector("p.assistant.final", timeout=15000)
            user = await page.text_content("p.user.final")
            assistant = await page.text_content("p.assistant.final")
            assert user.startswith("user: I spoke for ") and user.endswith(" seconds."), (user, console)
            spoken = float(user.split("for ")[1].split(" ")[0])
            assert spoken >= 1.0, user
            expected = 'assistant: The tool said: {"temp_c": 21}' if tools else "assistant: You spoke for "
            assert assistant.startswith(expected), assistant
            # the assistant's audio arrived at the output rate and the page played it
            await page.wait_for_function("() => window.spekoDemo.samplesPlayed > 0", timeout=10000)
            stats = await page.evaluate("window.spekoDemo")
            assert stats["framesIn"] > 0 and stats["samplesIn"] == int(rates[1])  # 1 s reply
            assert stats["usage"][1] > 0
            assert "usage" in await page.text_content("#status")

            await page.click("#hangup")
            await page.wait_for_selector("body[data-closed='1000']", timeout=5000)
            assert "closed: 1000" in await page.text_content("#status")
            shot = tmp_path / f"demo-{provider}.png"
            await page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            assert not [line for line in console if line.startswith(("error", "pageerror", "http"))], console
        finally:
            await browser.close()


async def test_dev_mint_is_same_origin_only_and_absent_outside_dev_mode(env, http):
    async with run_bridge({**env, "SPEKO_DEV": "1"}) as bridge:
        body = {"provider": "openai", "model": "gpt-realtime"}
        async with http.post(bridge.base + "/dev/sessions", json=body,
                             headers={"Origin": "https://evil.example.com"}) as r:
            assert r.status == 403
        async with http.post(bridge.base + "/dev/sessions", json=body,
                             headers={"Origin": bridge.base}) as r:
            assert r.status == 201 and (await r.json())["token"]
        async with http.get(bridge.base + "/sdk/speko-realtime.js") as r:
            assert r.status == 200 and "export function connect" in await r.text()
    async with run_bridge(env) as bridge:
        async with http.post(bridge.base + "/dev/sessions", json=body) as r:
            assert r.status in (404, 405)
        async with http.get(bridge.base + "/") as r:
            assert r.status == 404
        async with http.get(bridge.base + "/sdk/speko-realtime.js") as r:
            assert r.status == 200  # the SDK is served in production too
