// The demo page: press (or hold Space) to talk, or turn hands-free on (the provider's voice
// activity detection ends each turn, speaking over the answer cuts it), or type; hear the
// answer, see transcripts, tool calls, usage and how the session ended. Audio in and out is the SDK's own helpers: startCapture()
// and createPlayer(); this file is only the page around them.
import { connect, createPlayer, startCapture } from "/sdk/speko-realtime.js";

const MODELS = { openai: "gpt-realtime", google: "gemini-2.5-flash-native-audio-preview-12-2025", xai: "grok-voice-latest" };
const $ = (id) => document.getElementById(id);
const stats = { framesIn: 0, samplesIn: 0, samplesPlayed: 0, chunksSent: 0, usage: [0, 0], reconnecting: 0,
  resumed: 0, restarted: 0, responses: 0, speech: [] };
window.spekoDemo = stats;  // read by the browser test

let rt = null;          // the live session
let opening = null;     // the promise of the session being opened
let mic = null;         // startCapture() result, for the live session
let player = null;      // createPlayer() result, for the live session
let simulated = {};     // provider -> true when the server's simulator answers for it
let lines = {};         // role -> the element collecting the current utterance
let talking = false;

function status(text) { $("status").textContent = text; }
const handsFree = () => $("handsfree").checked;
function label() {
  $("talk").disabled = handsFree();
  $("talk").textContent = handsFree() ? (rt ? "Listening (hands-free)" : "Connecting...")
    : talking ? "Release to send" : rt ? "Hold to talk" : opening ? "Connecting..." : "Hold to talk";
  $("talk").classList.toggle("live", talking);
  $("talk").setAttribute("aria-pressed", String(talking));
}

async function mint() {
  const tools = $("tools").checked ? [{ name: "get_weather", description: "Weather for a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } }] : undefined;
  const body = { provider: $("provider").value, model: MODELS[$("provider").value],
    inputSampleRate: +$("inRate").value, outputSampleRate: +$("outRate").value, tools };
  if (handsFree()) body.turnDetection = { type: "server", silenceMs: 500 };
  const r = await fetch("/dev/sessions", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body) });
  const answer = await r.json();
  if (!r.ok) throw new Error(`${answer.error.code}: ${answer.error.message}`);
  return answer;  // the v2 mint answer: connect() takes it as it is
}

function transcript(f) {
  let el = lines[f.role];
  if (!el) {
    el = lines[f.role] = document.createElement("p");
    el.className = `${f.role} pending`;
    $("log").append(el);
  }
  if (f.final) {
    el.textContent = `${f.role}: ${f.text}`;
    el.classList.replace("pending", "final");
    delete lines[f.role];
  } else {
    el.textContent = (el.textContent || `${f.role}: `) + f.text;
  }
}

function toolCall(f) {
  const box = document.createElement("div");
  box.className = "tool";
  const name = document.createElement("b"); name.textContent = f.name;
  const args = document.createElement("code"); args.textContent = f.arguments;
  const input = document.createElement("input"); input.size = 40; input.value = '{"temp_c": 21}';
  input.setAttribute("aria-label", `result of ${f.name}`);
  const send = document.createElement("button"); send.textContent = "Send result";
  send.onclick = () => { if (rt) rt.sendToolResult(f.callId, input.value); send.disabled = true; };
  box.append("tool call ", name, " ", args, document.createElement("br"), input, " ", send);
  $("log").append(box);
}

function ended(session, { code, reason }) {
  if (rt !== session && rt !== null) return;  // an old session, ended after a settings change
  status(`closed: ${code} ${reason}`);
  document.body.dataset.closed = String(code);
  $("interrupt").disabled = $("hangup").disabled = true;
  rt = mic = player = null;
  label();
}

async function open() {
  status("minting...");
  const answer = await mint();
  // a dropped network resumes the conversation; if it cannot, a fresh session starts
  const session = await connect(answer, { reconnect: true, getSession: mint });
  player = createPlayer(session);
  session.on((f) => {
    if (f.type === "transcript") transcript(f);
    else if (f.type === "tool_call") toolCall(f);
    else if (f.type === "audio") { stats.framesIn += 1; stats.samplesIn += f.pcm.byteLength / 2; }
    else if (f.type === "speech") {
      // started: the bridge already cut the reply, and the SDK flushed the player at once
      stats.speech.push(f.state);
      status(f.state === "started" ? "connected · you are speaking" : "connected · answering");
    } else if (f.type === "usage") {
      stats.responses += 1;
      stats.usage[0] += f.inputAudioTokens; stats.usage[1] += f.outputAudioTokens;
      status(`connected · usage in ${stats.usage[0]} / out ${stats.usage[1]} audio tokens`);
    } else if (f.type === "reconnecting") {
      stats.reconnecting += 1;
      status(`reconnecting (attempt ${f.attempt})...`);
    } else if (f.type === "resumed" || f.type === "restarted") {
      stats[f.type] += 1;
      status(f.type === "resumed" ? "connected · resumed" : "connected · new session (the conversation restarted)");
    } else if (f.type === "error") {
      const p = document.createElement("p"); p.textContent = `error ${f.code}: ${f.message}`; $("log").append(p);
    } else if (f.type === "close") ended(session, f);
  });
  mic = await startCapture(session, { live: session.turnDetection.type !== "manual" });
  const sim = simulated[session.provider] ? ' · <span class="sim">simulated</span>' : "";
  $("who").innerHTML = `provider <b></b> · model <b></b>${sim} · ${session.inputSampleRate} Hz in / ${session.outputSampleRate} Hz out`;
  const [p, m] = $("who").querySelectorAll("b"); p.textContent = session.provider; m.textContent = session.model;
  $("interrupt").disabled = $("hangup").disabled = false;
  status("connected");
  rt = session;
  return session;
}

async function startTalking() {
  if (talking) return;
  talking = true;
  label();
  try {
    if (!rt) { opening = opening || open(); label(); await opening; }
    if (player) player.flush();  // the user speaks over the assistant
    if (talking && mic) await mic.resume();
  } catch (err) {
    status(`could not start: ${err.message}`);
    talking = false;
  } finally {
    opening = null;
    label();
  }
}

function stopTalking() {
  if (!talking) return;
  talking = false;
  label();
  if (mic && mic.live) {
    mic.pause();
    stats.chunksSent = mic.chunksSent;
    if (rt) rt.commit();
  }
}

async function ensureOpen() {
  if (!rt) { opening = opening || open(); label(); try { await opening; } finally { opening = null; label(); } }
  return rt;
}

async function typed(e) {
  e.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  try {
    const session = await ensureOpen();
    if (session.sendText(text)) $("text").value = "";
  } catch (err) { status(`could not send: ${err.message}`); }
}

// the session was minted for one provider, rates and turn mode: a change ends it, the next
// turn mints anew (hands-free opens one at once: its microphone is always on)
function settingsChanged() {
  const old = rt;
  rt = mic = player = null;
  $("who").textContent = "";
  $("interrupt").disabled = $("hangup").disabled = true;
  if (old) old.close(1000, "settings changed");  // its capture and player stop with it
  label();
}

setInterval(() => {
  if (mic) stats.chunksSent = mic.chunksSent;
  if (player) stats.samplesPlayed = player.samplesPlayed;
}, 100);

fetch("/dev/providers").then((r) => r.json()).then((p) => { simulated = p.simulated || {}; }).catch(() => {});
for (const id of ["provider", "inRate", "outRate", "tools", "handsfree"]) $(id).addEventListener("change", settingsChanged);
$("handsfree").addEventListener("change", () => {
  if (handsFree()) ensureOpen().catch((err) => status(`could not start: ${err.message}`));
});
$("typed").addEventListener("submit", typed);
$("talk").addEventListener("pointerdown", startTalking);
$("talk").addEventListener("pointerup", stopTalking);
$("talk").addEventListener("pointerleave", stopTalking);
const isSpace = (e) => e.code === "Space" && !["INPUT", "SELECT", "TEXTAREA"].includes(e.target.tagName);
document.addEventListener("keydown", (e) => { if (isSpace(e)) { e.preventDefault(); if (!e.repeat) startTalking(); } });
document.addEventListener("keyup", (e) => { if (isSpace(e)) { e.preventDefault(); stopTalking(); } });
$("interrupt").addEventListener("click", () => { if (rt) rt.interrupt(); });
$("hangup").addEventListener("click", () => { if (rt) rt.close(1000, "hung up"); });
label();
