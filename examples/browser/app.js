// The browser half of examples/backend_mint.py: everything an app needs, with the SDK's own
// audio helpers (startCapture, createPlayer) and no audio code of its own.
const $ = (id) => document.getElementById(id);
const log = (line) => { $("log").textContent += line + "\n"; };
const state = { session: null, mic: null, player: null, finals: [], closed: null };
window.example = state;  // read by the test (tests/test_browser.py)

async function open() {
  // 1. our backend mints (it holds the API key; this page never does)
  const r = await fetch("/session", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ provider: $("provider").value }) });
  const answer = await r.json();
  if (!r.ok) throw new Error(`${answer.error.code}: ${answer.error.message}`);
  // 2. the SDK comes from the bridge that minted: its URL is in the answer
  const bridge = new URL(answer.url.replace(/^ws/, "http"));
  const { connect, startCapture, createPlayer } = await import(`${bridge.origin}/sdk/speko-realtime.js`);
  // 3. connect with the mint answer as it is; audio in and out through the SDK's helpers
  const session = await connect(answer);
  state.player = createPlayer(session);
  session.on((frame) => {
    if (frame.type === "transcript" && frame.final) { state.finals.push(frame); log(`${frame.role}: ${frame.text}`); }
    if (frame.type === "error") log(`error ${frame.code}: ${frame.message}`);
    if (frame.type === "close") {
      state.closed = { code: frame.code, reason: frame.reason };
      log(`closed: ${frame.code} ${frame.reason}`);
      state.session = state.mic = null;
      $("hangup").disabled = true;
    }
  });
  state.mic = await startCapture(session, { live: false });
  state.session = session;
  $("hangup").disabled = false;
  log(`connected to ${session.provider} (${session.model}), session ${session.sessionId}`);
}

let talking = false;
async function down() {
  if (talking) return;
  talking = true;
  $("talk").textContent = "Release to send";
  try {
    if (!state.session) await open();
    state.player.flush();  // speaking over the assistant cuts it off
    if (talking) await state.mic.resume();
  } catch (err) { log(`could not start: ${err.message}`); talking = false; $("talk").textContent = "Hold to talk"; }
}
function up() {
  if (!talking) return;
  talking = false;
  $("talk").textContent = "Hold to talk";
  if (state.mic && state.mic.live) { state.mic.pause(); state.session.commit(); }
}

$("talk").addEventListener("pointerdown", down);
$("talk").addEventListener("pointerup", up);
$("talk").addEventListener("pointerleave", up);
document.addEventListener("keydown", (e) => { if (e.code === "Space" && !e.repeat && e.target.tagName !== "SELECT") { e.preventDefault(); down(); } });
document.addEventListener("keyup", (e) => { if (e.code === "Space") { e.preventDefault(); up(); } });
$("hangup").addEventListener("click", () => state.session && state.session.close(1000, "hung up"));
