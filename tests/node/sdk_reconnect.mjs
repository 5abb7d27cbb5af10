// The browser SDK's reconnection under Node's WebSocket (node --experimental-websocket), driven
// by tests/test_sdk_reconnect.py, which owns the network (a TCP proxy) and the bridge:
//   node --experimental-websocket sdk_reconnect.mjs <sdk url> <mode> <mint answer JSON> <bridge base> <api key>
// Prints one JSON line per event the session emits ({type, ...}, audio as {type, bytes}),
// then {"type": "done", ...}; a connect() that rejects prints {"type": "refused", code, closeCode}.
// Modes:
//   plain:   reconnect on; the test revokes the session (4004 must end it for good)
//   restart: reconnect with a short window and getSession() minting at <bridge base>; after
//            "restarted", one turn on the fresh session, then close(1000)
//   long:    reconnect with short steps (50-250 ms) and a 4 s window, no getSession; after
//            "resumed", one turn on the same session, then close(1000)
const [sdkUrl, mode, answerJson, base, apiKey] = process.argv.slice(2);
const { connect } = await import(sdkUrl);
const print = (o) => process.stdout.write(JSON.stringify(o) + "\n");

async function mint() {
  const r = await fetch(`${base}/v1/sessions`, { method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${apiKey}` },
    body: JSON.stringify({ provider: "openai", model: "gpt-realtime" }) });
  return r.json();
}

const options = mode === "restart"
  ? { reconnect: { windowMs: 800, baseDelayMs: 100, maxDelayMs: 200 }, getSession: mint }
  : mode === "long" ? { reconnect: { windowMs: 4000, baseDelayMs: 50, maxDelayMs: 250 } }
  : { reconnect: true };
let session;
try {
  session = await connect(JSON.parse(answerJson), options);
} catch (err) { // connect() refused: {type: "refused", code, closeCode, ms}
  print({ type: "refused", code: err.code, closeCode: err.closeCode, ms: Math.round(performance.now()) });
  process.exit(0);
}
print({ type: "open", sessionId: session.sessionId });
const tone = new Int16Array(24000 * 0.3).map((_, i) => Math.round(8000 * Math.sin(2 * Math.PI * 440 * i / 24000)));
session.on((f) => {
  print(f.type === "audio" ? { type: "audio", bytes: f.pcm.byteLength } : f);
  if (f.type === "reconnecting") print({ type: "sendAudio", accepted: session.sendAudio(tone), dropped: session.droppedAudioBytes });
  if (f.type === "restarted") { session.sendAudio(tone); session.commit(); }
  if (f.type === "resumed") { session.sendAudio(tone); session.commit(); }
  if (f.type === "usage" && mode !== "plain") session.close(1000, "done");
});
const end = await session.closed;
print({ type: "done", ...end, sessionId: session.sessionId });
