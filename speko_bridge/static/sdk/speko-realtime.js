// speko-realtime.js: the browser SDK for speko_bridge's /v1/realtime (an ES module, no build
// step; types in speko-realtime.d.ts next to it).
//
//   import { connect, startCapture, createPlayer } from "https://bridge.example.com/sdk/speko-realtime.js";
//   const session = await connect(mintAnswer);           // the 201 body of POST /v1/sessions, as it is
//   const off = session.on((frame) => console.log(frame.type, frame));   // every frame; off() unsubscribes
//   const player = createPlayer(session);                 // plays audio frames gaplessly; flushed on interrupt()
//   const mic = await startCapture(session);              // microphone -> PCM16 at session.inputSampleRate
//   mic.pause(); session.commit();                        // end of the user's turn
//   await session.close(1000, "done");                    // idempotent; resolves after the close handshake
//
// Frames: {type: "audio", pcm: Uint8Array, sampleRate, samples: Int16Array} for binary messages;
// the JSON frames as sent (transcript, tool_call, usage, error, close, and any newer type).
// Every way a socket ends reaches "close" subscribers once, as {type: "close", code, reason}.
// The token is the first WebSocket subprotocol: it never goes into a URL.
//
// connect(answer, { reconnect: true, getSession }) survives a dropped connection: a socket that
// ends without a close frame (1006) is reopened with the same token (jittered backoff, tried
// until the bridge's grace window runs out) and the bridge answers "resumed";
// session_elsewhere, 1001 (drain) or a window that ran out call getSession() (the app's mint)
// and go on with a fresh session ("restarted"); 1000, 4001, 4003, 4004, 4008 and 4009 end for
// good. Subscribers see "reconnecting" (each attempt), "resumed" or "restarted", and one final
// "close". Audio sent while disconnected is dropped (sendAudio returns false), not queued.

/** How long connect() waits for the socket to open and be accepted, unless told otherwise. */
export const DEFAULT_TIMEOUT_MS = 10000;
/** The bridge answers a refused socket (bad, used, expired or revoked token, origin, limits)
 * right after the handshake with an `error` frame and a close, and an accepted one with
 * nothing: connect() resolves once the socket has been open this long without a refusal. It
 * covers the server's token check (a store round trip, well under 10 ms), not the network. */
export const DEFAULT_CONFIRM_MS = 250;
const DEFAULT_RATE = 24000;
const LEGACY_TYPES = new Set(["audio", "transcript", "tool_call", "usage", "error", "close", "speech", "resumed",
  "reconnecting", "restarted", "*"]);
/** The reconnect policy `reconnect: true` means: attempts go on until windowMs has passed
 * (attempts: Infinity), so a network that comes back anywhere in the window is found within
 * maxDelayMs. windowMs should not exceed the bridge's SPEKO_RESUME_SECONDS (default 15 s):
 * past it the session is gone. */
export const DEFAULT_RECONNECT = Object.freeze({ attempts: Infinity, baseDelayMs: 250, maxDelayMs: 4000, windowMs: 15000 });
/** How long a reopened socket may take to say "resumed" (or refuse): no provider round trip. */
const RESUME_ANSWER_MS = 5000;

/** What a socket that ended with `code` calls for: "resume" (no close frame: the bridge keeps
 * the session for its grace window), "restart" (the server drains: a fresh session, through
 * getSession) or "final" (1000, and the codes a retry cannot fix: 4001 token, 4003 origin,
 * 4004 revoked, 4008 TTL, 4009 protocol violation; and any other close the bridge meant). */
export function reconnectPlan(code) {
  if (code === 1006) return "resume";
  if (code === 1001) return "restart";
  return "final";
}

/** Equal jitter: each wait is uniform in [cap/2, cap], cap = min(max, base * 2^attempt). The
 * random half keeps clients dropped together from coming back together; the fixed half keeps
 * a run of short draws from spending every attempt in the first second of an outage. */
export function reconnectDelay(policy, attempt, random = Math.random) {
  const cap = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** attempt);
  return cap / 2 + random() * (cap / 2);
}

/** Call `onFail` once if `ws` fails before it opens. Browsers follow such an error with a
 * close (1006); Node's WebSocket (undici, Node 20) does not, and leaves the socket
 * CONNECTING, so whoever waits for that close waits for ever (and its close() there fires
 * error again, synchronously). Returns a function that stops listening. */
function whenOpenFails(ws, onFail) {
  let opened = false;
  const onOpen = () => { opened = true; };
  const onError = () => { if (!opened) { opened = true; onFail(); } };
  ws.addEventListener("open", onOpen, { once: true });
  ws.addEventListener("error", onError);
  return () => { ws.removeEventListener("open", onOpen); ws.removeEventListener("error", onError); };
}

/** connect() refused or could not reach the bridge; `code` is the bridge's error code
 * (token_used, invalid_token, origin_not_allowed, rate_limited, ...) or one of this SDK's:
 * invalid_request, timeout, connection_failed. `closeCode` is the socket's close code. */
export class SpekoError extends Error {
  constructor(code, message, closeCode = null) {
    super(`${code}: ${message}`);
    this.name = "SpekoError";
    this.code = code;
    this.closeCode = closeCode;
  }
}

function toBuffer(pcm) {
  if (pcm instanceof ArrayBuffer) return pcm;
  if (ArrayBuffer.isView(pcm)) {
    return pcm.byteOffset === 0 && pcm.byteLength === pcm.buffer.byteLength
      ? pcm.buffer
      : pcm.buffer.slice(pcm.byteOffset, pcm.byteOffset + pcm.byteLength);
  }
  throw new TypeError("sendAudio takes a Uint8Array, an Int16Array or an ArrayBuffer of PCM16 LE mono");
}

export class RealtimeSession {
  constructor(ws, answer, { reconnect = null, getSession = null, timeout = DEFAULT_TIMEOUT_MS,
    confirmMs = DEFAULT_CONFIRM_MS } = {}) {
    this.url = answer.url;
    this.sessionId = answer.sessionId ?? null;
    this.expiresAt = answer.expiresAt ?? null;
    this.provider = answer.provider ?? null;
    this.model = answer.model ?? null;
    this.inputSampleRate = answer.inputSampleRate ?? DEFAULT_RATE;
    this.outputSampleRate = answer.outputSampleRate ?? DEFAULT_RATE;
    this.turnDetection = answer.turnDetection ?? { type: "manual" };
    this.closeCode = null;
    this.closeReason = "";
    this._handlers = new Set(); // {type: string | null, fn}
    this._interruptListeners = new Set();
    this._closeFrameSeen = false;
    this._closing = null;
    this._pending = null; // set by connect() until the session is confirmed
    this.closed = new Promise((resolve) => { this._resolveClosed = resolve; });
    this._token = answer.token;
    this._policy = reconnect === true ? { ...DEFAULT_RECONNECT }
      : reconnect ? { ...DEFAULT_RECONNECT, ...reconnect } : (getSession ? { ...DEFAULT_RECONNECT } : null);
    this._getSession = getSession;
    this._timeout = timeout;
    this._confirmMs = confirmMs;
    this._heldClose = null; // a close frame kept back while a reconnect may follow
    /** True between a dropped socket and the next one (or the final close). */
    this.reconnecting = false;
    /** Audio bytes dropped because they were sent while reconnecting. */
    this.droppedAudioBytes = 0;
    this._wake = null; // ends a reconnect wait early (close())
    this._attach(ws);
  }

  _attach(ws) {
    this.ws = ws;
    ws.binaryType = "arraybuffer";
    ws.addEventListener("message", (e) => { if (this.ws === ws) this._onMessage(e); });
    ws.addEventListener("close", (e) => { if (this.ws === ws) this._onClose(e); });
  }

  /** on(handler): every frame; on(type, handler): frames of that type ("*": every frame).
   * Returns a function that unsubscribes. */
  on(typeOrHandler, handler) {
    let entry;
    if (typeof typeOrHandler === "function" && handler === undefined) {
      entry = { type: null, fn: typeOrHandler };
    } else if (typeof typeOrHandler === "string" && typeof handler === "function") {
      if (!LEGACY_TYPES.has(typeOrHandler)) console.warn(`speko: no frame of type ${typeOrHandler} is known yet`);
      entry = { type: typeOrHandler === "*" ? null : typeOrHandler, fn: handler };
    } else {
      throw new TypeError("on(handler) or on(type, handler)");
    }
    this._handlers.add(entry);
    return () => { this._handlers.delete(entry); };
  }

  get isOpen() { return this.ws.readyState === WebSocket.OPEN && this._closing === null; }

  /** PCM16 LE mono at inputSampleRate, any length. False when the socket is not open. */
  sendAudio(pcm) {
    const data = toBuffer(pcm);
    if (this.reconnecting) { this.droppedAudioBytes += data.byteLength; return false; }
    if (!this.isOpen) return false;
    this.ws.send(data);
    return true;
  }

  commit() { return this._send({ type: "commit" }); }

  /** Cancels the assistant's reply and flushes every player made with createPlayer(this). */
  interrupt() {
    for (const flush of this._interruptListeners) flush();
    return this._send({ type: "interrupt" });
  }

  /** A typed user turn (any turn mode): echoed as a final user transcript, then answered. */
  sendText(text) { return this._send({ type: "text", text: String(text) }); }

  sendToolResult(callId, output) {
    return this._send({ type: "tool_result", callId, output: typeof output === "string" ? output : JSON.stringify(output) });
  }

  /** Idempotent; resolves with {code, reason} once the socket is closed. */
  close(code = 1000, reason = "") {
    if (this._closing === null) {
      this._closing = { code, reason };
      if (this.reconnecting) { if (this._wake) this._wake(); return this.closed; }
      if (this.ws.readyState === WebSocket.CONNECTING || this.ws.readyState === WebSocket.OPEN) {
        try {
          this.ws.close(code, reason);
        } catch (err) { // a code the browser may not send (1001, 1006...) or a reason over 123 bytes
          this._closing = null;
          throw err;
        }
      }
    }
    return this.closed;
  }

  _send(message) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  _emit(frame) {
    for (const entry of [...this._handlers]) {
      if (entry.type !== null && entry.type !== frame.type) continue;
      try { entry.fn(frame); } catch (err) { console.error("speko: frame handler failed", err); }
    }
  }

  _onMessage(e) {
    let frame;
    if (e.data instanceof ArrayBuffer) {
      const pcm = new Uint8Array(e.data);
      frame = { type: "audio", pcm, sampleRate: this.outputSampleRate, samples: new Int16Array(e.data, 0, e.data.byteLength >> 1) };
    } else {
      try { frame = JSON.parse(e.data); } catch { console.warn("speko: ignoring a frame that is not JSON"); return; }
      if (frame === null || typeof frame !== "object" || typeof frame.type !== "string") return;
      if (frame.type === "close" && this._policy && !this._pending && reconnectPlan(frame.code) !== "final") {
        this._heldClose = frame; // shown only if the session cannot go on
        return;
      }
      if (frame.type === "speech" && frame.state === "started") {
        // barge-in: the bridge already cut the reply; players stop at once, before any handler
        for (const flush of this._interruptListeners) flush();
      }
      if (frame.type === "close") {
        this._closeFrameSeen = true;
        this.closeCode = frame.code;
        this.closeReason = frame.reason || "";
      }
    }
    if (this._pending) { this._pending.frame(frame); return; }
    this._emit(frame);
  }

  _onClose(e) {
    if (this._policy && !this._pending && this._closing === null && this.closeCode === null) {
      const code = this._heldClose ? this._heldClose.code : (e.code === 1005 ? 1006 : e.code);
      if (reconnectPlan(code) !== "final") { this._reconnect(code); return; }
    }
    if (this.closeCode === null) {
      // no close frame from the bridge: our own close, or the connection dropped (1006)
      this.closeCode = this._closing && e.code === 1005 ? this._closing.code : e.code;
      this.closeReason = e.reason || (this._closing ? this._closing.reason
        : e.code === 1006 ? "connection lost" : "");
    }
    const end = { code: this.closeCode, reason: this.closeReason };
    this._interruptListeners.clear();
    if (this._pending) { this._pending.close(end); this._resolveClosed(end); return; }
    if (!this._closeFrameSeen) this._emit({ type: "close", ...end });
    this._resolveClosed(end);
  }

  // ---------------------------------------------------------------- reconnection

  async _reconnect(code) {
    this.reconnecting = true;
    let kind = reconnectPlan(code);
    let refusal = null;
    if (kind === "resume") {
      const deadline = Date.now() + this._policy.windowMs;
      kind = "restart"; // unless a resume succeeds or is refused for good
      for (let attempt = 1; attempt <= this._policy.attempts && this._closing === null; attempt++) {
        const delayMs = Math.min(reconnectDelay(this._policy, attempt), Math.max(0, deadline - Date.now()));
        this._emit({ type: "reconnecting", attempt, delayMs: Math.round(delayMs), code });
        await new Promise((resolve) => { this._wake = resolve; setTimeout(resolve, delayMs); });
        this._wake = null;
        if (this._closing !== null || Date.now() >= deadline) break;
        const got = await this._tryOpen(this.url, this._token, RESUME_ANSWER_MS);
        if (!got) continue; // unreachable for now
        if (got.first && got.first.type === "resumed" && this._closing === null) {
          this._heldClose = null;
          this.reconnecting = false;
          this._attach(got.ws);
          this._emit(got.first);
          return;
        }
        try { got.ws.close(); } catch { /* already closing */ }
        if (got.first && got.first.type === "error" && got.first.code === "session_elsewhere") break;
        if (got.first && got.first.type === "error") { refusal = got.first; kind = "final"; break; }
      }
    }
    if (kind === "restart" && this._getSession && this._closing === null && await this._restart()) return;
    this.reconnecting = false;
    if (refusal) this._emit(refusal);
    const end = this._closing ? { ...this._closing }
      : this._heldClose ? { code: this._heldClose.code, reason: this._heldClose.reason || "" }
      : { code, reason: "connection lost" };
    this.closeCode = end.code;
    this.closeReason = end.reason;
    this._interruptListeners.clear();
    this._emit({ type: "close", ...end });
    this._resolveClosed(end);
  }

  async _restart() {
    let answer;
    try { answer = await this._getSession(); } catch (err) { console.error("speko: getSession failed", err); return false; }
    if (!answer || typeof answer.url !== "string" || typeof answer.token !== "string") return false;
    const got = await this._tryOpen(answer.url, answer.token, this._confirmMs);
    if (!got || (got.first && got.first.type === "error") || this._closing !== null) {
      if (got) try { got.ws.close(); } catch { /* already closing */ }
      return false;
    }
    this.url = answer.url; this._token = answer.token;
    this.sessionId = answer.sessionId ?? null; this.expiresAt = answer.expiresAt ?? null;
    this.provider = answer.provider ?? this.provider; this.model = answer.model ?? this.model;
    this.inputSampleRate = answer.inputSampleRate ?? DEFAULT_RATE;
    this.outputSampleRate = answer.outputSampleRate ?? DEFAULT_RATE;
    this._heldClose = null;
    this.reconnecting = false;
    this._attach(got.ws);
    this._emit({ type: "restarted", sessionId: this.sessionId });
    return true;
  }

  /** A new socket and its first text frame: {ws, first} (first null when nothing came within
   * answerMs of the open), or null when it could not be opened. */
  _tryOpen(url, token, answerMs) {
    return new Promise((resolve) => {
      let ws;
      try { ws = new WebSocket(url, [token]); } catch { resolve(null); return; }
      ws.binaryType = "arraybuffer";
      let quiet = null;
      const finish = (result) => {
        clearTimeout(limit); clearTimeout(quiet);
        ws.removeEventListener("message", onMessage); ws.removeEventListener("close", onClose);
        stopWatching();
        resolve(result);
      };
      const onMessage = (e) => {
        let first = null;
        if (typeof e.data === "string") { try { first = JSON.parse(e.data); } catch { first = null; } }
        finish({ ws, first });
      };
      const onClose = () => finish(null);
      ws.addEventListener("message", onMessage);
      ws.addEventListener("close", onClose);
      const stopWatching = whenOpenFails(ws, () => { try { ws.close(); } catch { /* not open */ } finish(null); });
      ws.addEventListener("open", () => { quiet = setTimeout(() => finish({ ws, first: null }), answerMs); }, { once: true });
      const limit = setTimeout(() => { try { ws.close(); } catch { /* not open */ } finish(null); }, this._timeout);
    });
  }
}

/** Open the session a backend minted. `answer` is the 201 body of POST /v1/sessions as it is
 * ({url, token, sessionId, expiresAt, inputSampleRate, outputSampleRate, ...}). Resolves once
 * the bridge has accepted the socket; rejects with a SpekoError when it refuses it, cannot be
 * reached, or `timeout` ms pass first. */
export function connect(answer, { timeout = DEFAULT_TIMEOUT_MS, confirmMs = DEFAULT_CONFIRM_MS, reconnect = false,
  getSession = null } = {}) {
  if (!answer || typeof answer.url !== "string" || typeof answer.token !== "string" || !answer.token) {
    return Promise.reject(new SpekoError("invalid_request", "connect() takes the mint answer: {url, token, ...}"));
  }
  return new Promise((resolve, reject) => {
    let ws;
    try {
      ws = new WebSocket(answer.url, [answer.token]);
    } catch (err) {
      reject(new SpekoError("invalid_request", err.message));
      return;
    }
    const session = new RealtimeSession(ws, answer, { reconnect, getSession, timeout, confirmMs });
    const early = []; // frames that came before connect() resolved, for the first subscribers
    let refusal = null;
    let timer = null;
    let confirm = null;
    const settle = () => { clearTimeout(timer); clearTimeout(confirm); session._pending = null; };
    const fail = (err) => {
      settle();
      if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close();
      reject(err);
    };
    const accept = () => {
      settle();
      resolve(session);
      // after the caller's `await connect()` continuation has subscribed
      setTimeout(() => { for (const f of early) session._emit(f); }, 0);
    };
    session._pending = {
      frame(f) {
        if (f.type === "error") refusal = f; // the bridge's answer to a socket it will not serve; close follows
        else if (f.type === "close") fail(new SpekoError(refusal ? refusal.code : "connection_failed",
          refusal ? refusal.message : f.reason || "closed before the session started", f.code));
        else { early.push(f); accept(); }
      },
      close(end) {
        fail(new SpekoError(refusal ? refusal.code : "connection_failed",
          refusal ? refusal.message : `could not open ${answer.url} (${end.code}${end.reason ? " " + end.reason : ""})`,
          end.code));
      },
    };
    timer = setTimeout(() => fail(new SpekoError("timeout", `no session from ${answer.url} within ${timeout} ms`)), timeout);
    ws.addEventListener("open", () => { confirm = setTimeout(() => { if (!refusal) accept(); }, confirmMs); }, { once: true });
    // a browser's close (1006, handled above) comes first and settles it; Node's never comes
    whenOpenFails(ws, () => setTimeout(
      () => fail(new SpekoError("connection_failed", `could not open ${answer.url} (1006)`, 1006)), 0));
  });
}

// ------------------------------------------------------------------ audio helpers

const CAPTURE_WORKLET = new URL("./speko-capture-worklet.js", import.meta.url).href;

/** Microphone capture: PCM16 mono at `sampleRate` (default session.inputSampleRate) through an
 * AudioWorklet, sent on the session while live. Starts live unless `{live: false}`. */
export async function startCapture(session, { sampleRate = session.inputSampleRate, live = true, stream = null,
  constraints = { channelCount: 1, echoCancellation: true, noiseSuppression: true } } = {}) {
  const media = stream || await navigator.mediaDevices.getUserMedia({ audio: constraints });
  let ctx = new AudioContext({ sampleRate });
  let source;
  try {
    source = ctx.createMediaStreamSource(media);
  } catch (err) { // a browser that will not feed a microphone into a context at another rate
    await ctx.close();
    ctx = new AudioContext();
    source = ctx.createMediaStreamSource(media);
  }
  await ctx.audioWorklet.addModule(CAPTURE_WORKLET);
  const node = new AudioWorkletNode(ctx, "speko-capture", { processorOptions: { targetRate: sampleRate } });
  source.connect(node);
  const capture = {
    sampleRate,
    live,
    chunksSent: 0,
    bytesSent: 0,
    /** Start sending (resumes the audio context, which needs a user gesture in browsers). */
    async resume() { capture.live = true; await ctx.resume(); },
    /** Stop sending; the microphone stays open for the next turn. */
    pause() { capture.live = false; },
    /** Release the microphone and the audio context. Idempotent. */
    async stop() {
      capture.live = false;
      node.port.onmessage = null;
      if (!stream) for (const track of media.getTracks()) track.stop();
      if (ctx.state !== "closed") await ctx.close();
    },
  };
  node.port.onmessage = (e) => {
    if (capture.live && session.sendAudio(e.data)) { capture.chunksSent += 1; capture.bytesSent += e.data.byteLength; }
  };
  session.closed.then(() => capture.stop());
  if (live) await ctx.resume();
  return capture;
}

/** Gapless playback of audio frames: each is scheduled right after the previous one, whatever
 * its arrival jitter. Given a session, it plays that session's audio frames and is flushed by
 * session.interrupt(); flush() stops everything scheduled at once. */
export function createPlayer(session = null, { sampleRate = session ? session.outputSampleRate : DEFAULT_RATE,
  leadSeconds = 0.05, context = null } = {}) {
  const ctx = context || new AudioContext({ sampleRate });
  const sources = new Set();
  let next = 0;
  const player = {
    context: ctx,
    framesIn: 0,
    samplesIn: 0,
    samplesPlayed: 0,
    /** Seconds of audio scheduled and not yet played. */
    get bufferedSeconds() { return Math.max(0, next - ctx.currentTime); },
    /** Queue an audio frame ({pcm: Uint8Array, sampleRate}) or raw PCM16 at `rate`. */
    play(frameOrPcm, rate = sampleRate) {
      const pcm = frameOrPcm && frameOrPcm.pcm ? frameOrPcm.pcm : frameOrPcm;
      const frameRate = frameOrPcm && frameOrPcm.sampleRate ? frameOrPcm.sampleRate : rate;
      const samples = pcm instanceof Int16Array ? pcm : new Int16Array(toBuffer(pcm), 0, pcm.byteLength >> 1);
      player.framesIn += 1;
      player.samplesIn += samples.length;
      if (samples.length === 0) return;
      if (ctx.state === "suspended") ctx.resume();
      const buffer = ctx.createBuffer(1, samples.length, frameRate);
      const data = buffer.getChannelData(0);
      for (let i = 0; i < samples.length; i++) data[i] = samples[i] / 32768;
      const src = ctx.createBufferSource();
      src.buffer = buffer;
      src.connect(ctx.destination);
      next = Math.max(next, ctx.currentTime + leadSeconds);
      src.start(next);
      next += buffer.duration;
      sources.add(src);
      src.onended = () => { if (sources.delete(src)) player.samplesPlayed += samples.length; };
    },
    /** Stop everything scheduled, at once. */
    flush() {
      for (const src of sources) { src.onended = null; try { src.stop(); } catch { /* not started */ } }
      sources.clear();
      next = 0;
    },
    /** Flush, unsubscribe from the session, and close the audio context (unless it was given). */
    async close() {
      player.flush();
      if (off) off();
      if (session) session._interruptListeners.delete(player.flush);
      if (!context && ctx.state !== "closed") await ctx.close();
    },
  };
  const off = session ? session.on("audio", (f) => player.play(f)) : null;
  if (session) session._interruptListeners.add(player.flush);
  return player;
}
