// The demo page: press to talk, hear the answer, see transcripts, tool calls, usage and the close.
import { connect } from "/sdk/speko-realtime.js";

const MODELS = { openai: "gpt-realtime", google: "gemini-2.5-flash-native-audio", xai: "grok-voice-latest" };
const $ = (id) => document.getElementById(id);
const stats = { framesIn: 0, samplesIn: 0, samplesPlayed: 0, chunksSent: 0, usage: [0, 0] };
window.spekoDemo = stats;  // read by the browser test

let rt = null;
let mic = null;        // {ctx, node, stream}
let player = null;     // {ctx, next, sources}
let lines = {};        // role -> the element collecting the current utterance

function status(text) { $("status").textContent = text; }

async function mint() {
  const tools = $("tools").checked ? [{ name: "get_weather", description: "Weather for a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } }] : undefined;
  const body = { provider: $("provider").value, model: MODELS[$("provider").value],
    inputSampleRate: +$("inRate").value, outputSampleRate: +$("outRate").value, tools };
  const r = await fetch("/dev/sessions", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body) });
  const answer = await r.json();
  if (!r.ok) throw new Error(`${answer.error.code}: ${answer.error.message}`);
  return { ...answer, inputSampleRate: body.inputSampleRate, outputSampleRate: body.outputSampleRate };
}

function transcript(f) {
  let el = lines[f.role];
  if (!el) {
    el = lines[f.role] = document.createElement("p");
    el.className = `${f.role} pending`;
    el.dataset.role = f.role;
    $("log").append(el);
  }
  if (f.final) {
    el.textContent = `${f.role}: ${f.text}`;
    el.classList.remove("pending");
    el.classList.add("final");
    delete lines[f.role];
  } else {
    el.textContent = (el.textContent || `${f.role}: `) + f.text;
  }
}

function toolCall(f) {
  const box = document.createElement("div");
  box.className = "tool";
  box.innerHTML = `tool call <b></b> <code></code><br><input size="40" value='{"temp_c": 21}'> <button>Send result</button>`;
  box.querySelector("b").textContent = f.name;
  box.querySelector("code").textContent = f.arguments;
  box.querySelector("button").onclick = () => {
    rt.sendToolResult(f.callId, box.querySelector("input").value);
    box.querySelector("button").disabled = true;
  };
  $("log").append(box);
}

function play(f) {
  stats.framesIn += 1;
  stats.samplesIn += f.pcm.length;
  if (!player) {
    const ctx = new AudioContext({ sampleRate: f.sampleRate });
    player = { ctx, next: 0, sources: new Set() };
  }
  const { ctx } = player;
  const buffer = ctx.createBuffer(1, f.pcm.length, f.sampleRate);
  const data = buffer.getChannelData(0);
  for (let i = 0; i < f.pcm.length; i++) data[i] = f.pcm[i] / 32768;
  const source = ctx.createBufferSource();
  source.buffer = buffer;
  source.connect(ctx.destination);
  // Scheduled back to back: no gap between frames, whatever their arrival jitter.
  player.next = Math.max(player.next, ctx.currentTime + 0.05);
  source.start(player.next);
  player.next += buffer.duration;
  player.sources.add(source);
  source.onended = () => { player.sources.delete(source); stats.samplesPlayed += f.pcm.length; };
}

function stopPlayback() {
  if (!player) return;
  for (const s of player.sources) s.stop();
  player.sources.clear();
  player.next = 0;
}

async function ensureSession() {
  if (rt) return rt;
  status("minting...");
  const session = await mint();
  rt = await connect(session);
  rt.on("transcript", transcript);
  rt.on("tool_call", toolCall);
  rt.on("audio", play);
  rt.on("usage", (f) => {
    stats.usage[0] += f.inputAudioTokens; stats.usage[1] += f.outputAudioTokens;
    status(`connected to ${session.url} · usage in ${stats.usage[0]} / out ${stats.usage[1]} audio tokens`);
  });
  rt.on("error", (f) => { const p = document.createElement("p"); p.textContent = `error ${f.code}: ${f.message}`; $("log").append(p); });
  rt.closed.then(({ code, reason }) => {
    status(`closed: ${code} ${reason}`);
    document.body.dataset.closed = String(code);
    rt = null;
    $("interrupt").disabled = $("hangup").disabled = true;
  });
  $("interrupt").disabled = $("hangup").disabled = false;
  status(`connected to ${session.url}`);
  return rt;
}

async function startTalking() {
  $("talk").classList.add("live");
  try {
    const session = await ensureSession();
    stopPlayback();
    if (!mic) {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true } });
      const ctx = new AudioContext({ sampleRate: session.inputSampleRate });
      await ctx.audioWorklet.addModule("/demo/capture-worklet.js");
      const node = new AudioWorkletNode(ctx, "pcm-capture");
      ctx.createMediaStreamSource(stream).connect(node);
      mic = { ctx, node, stream, live: false };
      node.port.onmessage = (e) => { if (mic.live && rt && rt.sendAudio(e.data)) stats.chunksSent += 1; };
    }
    await mic.ctx.resume();
    mic.live = true;
  } catch (err) {
    status(`could not start: ${err.message}`);
    $("talk").classList.remove("live");
  }
}

function stopTalking() {
  $("talk").classList.remove("live");
  if (mic && mic.live) {
    mic.live = false;
    if (rt) rt.commit();
  }
}

$("talk").addEventListener("pointerdown", startTalking);
$("talk").addEventListener("pointerup", stopTalking);
$("talk").addEventListener("pointerleave", stopTalking);
$("interrupt").addEventListener("click", () => { stopPlayback(); if (rt) rt.interrupt(); });
$("hangup").addEventListener("click", () => { if (rt) rt.close(); });
