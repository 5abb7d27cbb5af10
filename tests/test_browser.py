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
pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="chromium missing: `make test` installs it with apt"),
    # one browser at a time under `make test`'s workers (pytest-xdist --dist loadgroup):
    # a real microphone played at its pace does not wait for a core shared by two Chromiums
    pytest.mark.xdist_group("chromium"),
]

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
            keyboard = provider == "google"  # one run holds Space instead of the button
            if keyboard:
                await page.focus("body")
                await page.keyboard.down("Space")
            else:
                await page.dispatch_event("#talk", "pointerdown")
            await page.wait_for_function("() => window.spekoDemo.chunksSent >= 50", timeout=10000)  # >= 1 s of mic
            assert await page.text_content("#talk") == "Release to send"  # the label follows the state
            if keyboard:
                await page.keyboard.up("Space")
            else:
                await page.dispatch_event("#talk", "pointerup")
            assert await page.text_content("#talk") == "Hold to talk"
            who = await page.text_content("#who")
            assert f"provider {provider}" in who and "simulated" in who and f"{rates[0]} Hz in" in who, who

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

            if keyboard:  # a new provider ends the session (the next turn would mint anew)
                await page.select_option("#provider", "openai")
                reason = "settings changed"
            else:
                await page.click("#hangup")
                reason = "hung up"
            await page.wait_for_selector("body[data-closed='1000']", timeout=5000)
            assert await page.text_content("#status") == f"closed: 1000 {reason}"  # code and reason
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


#: Run inside the example page (another origin than the bridge's): the module comes from the
#: bridge, the mint answers from the example's backend. Returns what the handle did.
CONTRACT = """async (base) => {
  const sdk = await import(base + "/sdk/speko-realtime.js");
  const mint = async (body) => (await fetch("/session", { method: "POST",
    headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })).json();
  const until = (test, ms = 8000) => new Promise((resolve, reject) => {
    const t0 = Date.now();
    const poll = () => test() ? resolve() : Date.now() - t0 > ms ? reject(new Error("timed out")) : setTimeout(poll, 20);
    poll();
  });
  const out = {};
  const answer = await mint({ provider: "openai", tools: true });
  const s = await sdk.connect(answer);
  out.sid = answer.sessionId;
  out.handle = [s.sessionId === answer.sessionId, s.expiresAt === answer.expiresAt, s.inputSampleRate];
  const every = [];                      // on(fn), never unsubscribed: sees every frame type
  s.on((f) => every.push(f.type));
  let counted = 0;                       // on(fn), unsubscribed after the first reply
  const off = s.on((f) => {
    counted += 1;
    if (f.type === "audio" && !out.pcm) out.pcm = [f.pcm.constructor.name, f.pcm.buffer.constructor.name,
                                                   f.sampleRate, f.pcm.byteLength % 2, f.samples.length];
    if (f.type === "tool_call") s.sendToolResult(f.callId, { temp_c: 21 });
  });
  const tone = new Int16Array(answer.inputSampleRate);
  for (let i = 0; i < tone.length; i++) tone[i] = 8000 * Math.sin(2 * Math.PI * 220 * i / answer.inputSampleRate);
  out.sent = [s.sendAudio(new Uint8Array(tone.buffer)), s.commit()];
  await until(() => every.filter((t) => t === "usage").length >= 2);   // the tool call's turn, then the reply
  s.ws.send("not json");                                                // the bridge answers invalid_message
  await until(() => every.includes("error"));
  off();
  const before = counted;
  s.sendAudio(tone);
  s.commit();
  await until(() => every.filter((t) => t === "usage").length >= 3);
  out.afterUnsubscribe = counted - before;
  const closes = [];
  s.on("close", (f) => closes.push([f.code, f.reason]));
  const wsClose = s.ws.close.bind(s.ws);  // what goes on the wire
  s.ws.close = (...args) => { out.wire = args; return wsClose(...args); };
  out.close = [await s.close(4000, "bye"), await s.close(), closes, s.closeCode];
  out.every = [...new Set(every)].sort();
  try { await sdk.connect(answer); out.used = "connected"; }
  catch (e) { out.used = [e.name, e.code, e.closeCode]; }
  // a live session whose server is about to be killed
  const live = await sdk.connect(await mint({ provider: "openai" }));
  window.dropped = [];
  live.on("close", (f) => window.dropped.push([f.code, f.reason]));
  return out;
}"""


async def test_a_page_on_another_origin_talks_with_the_sdk_helpers(tmp_path):
    """examples/backend_mint.py serves examples/browser/ on its own port; the page imports the
    SDK from the bridge (CORS), holds a turn with startCapture/createPlayer and the fake
    microphone, then checks the handle contract; killing the bridge reaches close handlers."""
    import asyncio
    import os
    import sys

    import aiohttp
    from playwright.async_api import async_playwright

    from .conftest import API_KEY, SIGNING_KEY
    from .fleet import BridgeProcess
    from .redis_server import free_port

    root = Path(__file__).resolve().parent.parent
    wav = speech_wav(tmp_path / "mic.wav")
    bridge = await BridgeProcess("bridge", {"SPEKO_API_KEYS": API_KEY, "SPEKO_SIGNING_KEY": SIGNING_KEY,
                                            "SPEKO_SIMULATE": "1", "SPEKO_LOG_FORMAT": "text"}, tmp_path).start()
    port = free_port()
    backend = await asyncio.create_subprocess_exec(
        sys.executable, str(root / "examples" / "backend_mint.py"), "--port", str(port),
        env={**os.environ, "SPEKO_URL": bridge.base, "SPEKO_KEY": API_KEY, "PYTHONPATH": str(root)})
    page_origin = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(page_origin + "/") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}"])
                try:
                    page = await browser.new_page()
                    problems: list[str] = []
                    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
                    page.on("console", lambda m: m.type == "error" and problems.append(m.text))
                    await page.goto(page_origin + "/")
                    # a turn through the example's own UI: capture and player helpers only
                    await page.dispatch_event("#talk", "pointerdown")
                    await page.wait_for_function("() => window.example.mic && window.example.mic.chunksSent >= 50",
                                                 timeout=10000)  # >= 1 s of microphone
                    await page.dispatch_event("#talk", "pointerup")
                    await page.wait_for_function(
                        "() => window.example.finals.some((f) => f.role === 'assistant')", timeout=10000)
                    finals = await page.evaluate("window.example.finals.map((f) => f.role + ': ' + f.text)")
                    user = next(f for f in finals if f.startswith("user: I spoke for "))
                    assert float(user.split("for ")[1].split(" ")[0]) >= 1.0, finals
                    await page.wait_for_function("() => window.example.player.samplesPlayed > 0", timeout=10000)

                    out = await page.evaluate(CONTRACT, bridge.base)
                    assert out["handle"] == [True, True, 16000]
                    assert out["sent"] == [True, True]
                    assert out["pcm"] == ["Uint8Array", "ArrayBuffer", 24000, 0, out["pcm"][4]] and out["pcm"][4] > 0
                    assert out["every"] == ["audio", "close", "error", "tool_call", "transcript", "usage"], out
                    assert out["afterUnsubscribe"] == 0
                    assert out["close"] == [{"code": 4000, "reason": "bye"}, {"code": 4000, "reason": "bye"},
                                            [[4000, "bye"]], 4000]
                    assert out["wire"] == [4000, "bye"]
                    assert out["used"] == ["SpekoError", "token_used", 4001]
                    # the bridge recorded the code the page closed with, as the client's word:
                    # a normal end whose reason quotes it (no client writes a server code)
                    async with http.get(f"{bridge.base}/v1/sessions/{out['sid']}",
                                        headers={"Authorization": f"Bearer {API_KEY}"}) as r:
                        rec = await r.json()
                        assert rec["closeCode"] == 1000 and "4000" in rec["closeReason"], rec
                    bridge.proc.kill()  # no close handshake: the connection just drops
                    await page.wait_for_function("() => window.dropped.length > 0", timeout=10000)
                    assert await page.evaluate("window.dropped") == [[1006, "connection lost"]]
                    assert not problems, problems
                finally:
                    await browser.close()
    finally:
        backend.kill()
        await backend.wait()
        await bridge.stop()


async def test_the_demo_resumes_after_its_network_drops(env, tmp_path):
    """The page's socket runs through a TCP proxy that is stopped for a few seconds (every
    connection through it aborted: the browser sees 1006) and started again. The SDK resumes
    the same session with no code in the page, and the demo shows "reconnecting"."""
    from playwright.async_api import async_playwright

    from .tcpproxy import TcpProxy

    wav = speech_wav(tmp_path / "mic.wav")
    proxy = await TcpProxy(0).start()
    # the page loads from the bridge itself (its dev mint is same-origin only); the socket's
    # url, the minted one, names the proxy
    env = {**env, "SPEKO_DEV": "1", "SPEKO_PUBLIC_URL": f"http://127.0.0.1:{proxy.port}"}
    try:
        async with run_bridge(env) as bridge, async_playwright() as pw:
            proxy.target_port = bridge.port
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}"])
            try:
                page = await browser.new_page()
                console: list[str] = []
                page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
                page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
                await page.goto(bridge.base + "/")
                statuses: list[str] = []
                await page.expose_function("sawStatus", lambda text: statuses.append(text))
                await page.evaluate("""() => new MutationObserver(() => window.sawStatus(
                    document.getElementById('status').textContent)).observe(
                    document.getElementById('status'), {childList: true, characterData: true, subtree: true})""")

                async def turn(finals: int) -> None:
                    await page.dispatch_event("#talk", "pointerdown")
                    await page.wait_for_function("() => window.spekoDemo.chunksSent >= 25", timeout=10000)
                    await page.dispatch_event("#talk", "pointerup")
                    await page.wait_for_function(
                        f"() => document.querySelectorAll('p.assistant.final').length >= {finals}", timeout=15000)

                await turn(1)
                live = bridge.app.state.registry.sessions()
                assert len(live) == 1
                session_id = live[0].session_id
                await proxy.stop()  # the network goes away
                await page.wait_for_function("() => window.spekoDemo.reconnecting >= 1", timeout=5000)
                assert any(s.startswith("reconnecting") for s in statuses), statuses
                await page.wait_for_timeout(3000)
                await proxy.start()  # and comes back
                await page.wait_for_function("() => window.spekoDemo.resumed === 1", timeout=15000)
                assert await page.text_content("#status") == "connected · resumed"
                await page.evaluate("() => { window.spekoDemo.chunksSent = 0; }")
                await turn(2)  # the same conversation goes on
                assert [s.session_id for s in bridge.app.state.registry.sessions()] == [session_id]
                stats = await page.evaluate("window.spekoDemo")
                assert stats["restarted"] == 0
                await page.click("#hangup")
                await page.wait_for_selector("body[data-closed='1000']", timeout=5000)
                # the browser itself logs each attempt made while the proxy was down
                refused = "net::ERR_CONNECTION_REFUSED"
                assert not [line for line in console
                            if line.startswith(("error", "pageerror")) and refused not in line], console
            finally:
                await browser.close()
    finally:
        await proxy.stop()


def speechlike_wav(path: Path, pattern=((1.2, True), (1.6, False), (1.2, True), (2.4, False)),
                   rate: int = 48000) -> Path:
    """Speech-like audio from numpy (no TTS needed): a voiced source (a 120-180 Hz glide with
    its harmonics, as a voice's pitch moves) shaped by a 4 Hz syllable envelope, for the
    stretches marked True; digital silence for the pauses. Energy and rhythm are what a
    voice activity detector reads."""
    import numpy as np

    parts = []
    for seconds, voiced in pattern:
        n = int(seconds * rate)
        if not voiced:
            parts.append(np.zeros(n))
            continue
        t = np.arange(n) / rate
        pitch = 120 + 60 * np.sin(2 * np.pi * 0.7 * t)
        phase = 2 * np.pi * np.cumsum(pitch) / rate
        voice = sum(np.sin(k * phase) / k for k in range(1, 8))
        syllables = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t) ** 2
        parts.append(0.25 * voice * syllables)
    pcm = (np.concatenate(parts) * 32767).clip(-32768, 32767).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


@pytest.mark.parametrize("provider", ["openai", "google"])
async def test_demo_hands_free_answers_twice_with_no_button_pressed(env, tmp_path, provider):
    from playwright.async_api import async_playwright

    wav = speechlike_wav(tmp_path / "speech.wav")
    env = {**env, "SPEKO_DEV": "1"}
    async with run_bridge(env) as bridge, async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}"])
        try:
            page = await browser.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            await page.goto(bridge.base + "/")
            await page.select_option("#provider", provider)
            await page.check("#handsfree")  # nothing else: no button, no key
            await page.wait_for_function("() => window.spekoDemo.responses >= 2", timeout=30000)
            stats = await page.evaluate("window.spekoDemo")
            assert stats["speech"][:4] == ["started", "stopped", "started", "stopped"], stats["speech"]
            assert await page.is_disabled("#talk") and "hands-free" in await page.text_content("#talk")
            finals = await page.locator("p.assistant.final").all_text_contents()
            assert len(finals) >= 2 and all(f.startswith("assistant: You spoke for ") for f in finals), finals
            # a typed turn in the same session
            await page.fill("#text", "hello from the keyboard")
            await page.click("#typed button")
            await page.wait_for_function(
                "() => [...document.querySelectorAll('p.assistant.final')].some("
                "p => p.textContent.includes('You wrote: hello from the keyboard'))", timeout=15000)
            users = await page.locator("p.user.final").all_text_contents()
            assert "user: hello from the keyboard" in users, users
            assert not [line for line in console if line.startswith(("error", "pageerror"))], console
        finally:
            await browser.close()


BARGE_IN_PAGE = """async (answer) => {
  const { connect, createPlayer } = await import('/sdk/speko-realtime.js');
  const session = await connect(answer);
  const player = createPlayer(session);
  const out = { speech: [], bufferedAtStarted: [], bufferedBeforeStarted: [], audioFrames: 0 };
  let lastBuffered = 0;
  session.on((f) => {
    // the player subscribed first: at this handler it has already scheduled this frame
    if (f.type === 'audio') { out.audioFrames += 1; lastBuffered = player.bufferedSeconds; }
    if (f.type === 'speech') {
      out.speech.push(f.state);
      if (f.state === 'started') {
        out.bufferedBeforeStarted.push(lastBuffered);
        out.bufferedAtStarted.push(player.bufferedSeconds);
      }
    }
  });
  const rate = session.inputSampleRate, chunk = rate / 50;  // 20 ms, as a microphone sends
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  let phase = 0;
  async function speak(seconds, loud) {
    for (let i = 0; i < seconds * 50; i++) {
      const pcm = new Int16Array(chunk);
      if (loud) for (let k = 0; k < chunk; k++, phase++) pcm[k] = 8000 * Math.sin(2 * Math.PI * 440 * phase / rate);
      session.sendAudio(pcm);
      await sleep(20);
    }
  }
  await speak(1.0, true);
  const until = Date.now() + 10000;  // silence until the reply is queued in the player
  while (lastBuffered < 1.0 && Date.now() < until) await speak(0.1, false);
  out.bufferedBeforeSpeaking = lastBuffered;
  await speak(0.6, true);  // the user talks over the reply
  await speak(1.0, false);
  out.samplesPlayed = player.samplesPlayed;
  await session.close(1000, 'done');
  return out;
}"""


@pytest.mark.parametrize("provider", ["openai", "google", "xai"])
async def test_the_sdk_player_goes_silent_at_once_on_speech_started(env, tmp_path, http, provider):
    """Barge-in as a page hears it: a hands-free session whose reply (4 s of audio, sent
    faster than it plays) is queued in createPlayer's schedule; the user speaks over it. When
    the `speech: started` frame reaches the page's handlers, nothing of the reply is left
    scheduled (the SDK flushed every player first), though seconds of it were queued just
    before."""
    from playwright.async_api import async_playwright

    from .test_conformance import provider_env, start_simulator
    from .wsclient import mint

    sim = await start_simulator(provider, reply_ms=4000)
    try:
        async with run_bridge({**provider_env(env, provider, sim.url), "SPEKO_DEV": "1"}) as bridge, \
                async_playwright() as pw:
            answer = await mint(http, bridge, provider, inputSampleRate=16000, outputSampleRate=24000,
                                turnDetection={"type": "server", "silenceMs": 300, "prefixMs": 100})
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                problems: list[str] = []
                page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
                await page.goto(bridge.base + "/")
                out = await page.evaluate(BARGE_IN_PAGE, answer)
            finally:
                await browser.close()
    finally:
        await sim.stop()
    assert out["speech"][:3] == ["started", "stopped", "started"], out
    assert out["bufferedBeforeSpeaking"] >= 1.0, out  # the reply was queued, seconds of it
    assert out["bufferedBeforeStarted"][1] > 0.5, out
    assert out["bufferedAtStarted"][1] == 0, out  # and gone the moment the user spoke
    assert not problems, problems
