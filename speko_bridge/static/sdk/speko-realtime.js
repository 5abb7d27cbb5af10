// speko-realtime.js: the browser SDK for speko_bridge's /v1/realtime (an ES module, no build step).
//
//   import { connect } from "/sdk/speko-realtime.js";
//   const rt = await connect({ url, token, inputSampleRate: 16000, outputSampleRate: 24000 });
//   const off = rt.on("transcript", (f) => console.log(f.role, f.text, f.final));
//   rt.on("audio", (f) => play(f.pcm, f.sampleRate));   // f.pcm is an Int16Array
//   rt.sendAudio(int16Array); rt.commit(); rt.interrupt(); rt.sendToolResult(callId, {ok: true});
//   await rt.close();                                     // resolves after the close handshake
//
// Frames: {type: "audio", pcm, sampleRate} for binary messages; JSON frames as sent
// (transcript, tool_call, usage, error, close). on("*", fn) sees every frame. The token is
// the first WebSocket subprotocol: never put it in the URL.

const FRAME_TYPES = new Set(["audio", "transcript", "tool_call", "usage", "error", "close", "*"]);

export class RealtimeSession {
  constructor(ws, { inputSampleRate = 24000, outputSampleRate = 24000 } = {}) {
    this.ws = ws;
    this.inputSampleRate = inputSampleRate;
    this.outputSampleRate = outputSampleRate;
    this.closeCode = null;
    this.closeReason = "";
    this.handlers = new Map();
    this.closed = new Promise((resolve) => {
      ws.addEventListener("close", (e) => {
        if (this.closeCode === null) {
          this.closeCode = e.code;
          this.closeReason = this.closeReason || e.reason;
        }
        resolve({ code: this.closeCode, reason: this.closeReason });
      });
    });
    ws.addEventListener("message", (e) => this._onMessage(e));
  }

  on(type, handler) {
    if (!FRAME_TYPES.has(type)) throw new TypeError(`unknown frame type ${type}`);
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(handler);
    return () => this.handlers.get(type).delete(handler);
  }

  sendAudio(pcm) {
    // Int16Array (PCM16 LE mono at inputSampleRate) or its ArrayBuffer; any length.
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(pcm instanceof ArrayBuffer ? pcm : pcm.buffer.slice(pcm.byteOffset, pcm.byteOffset + pcm.byteLength));
    return true;
  }

  commit() { return this._send({ type: "commit" }); }

  interrupt() { return this._send({ type: "interrupt" }); }

  sendToolResult(callId, output) {
    return this._send({ type: "tool_result", callId, output: typeof output === "string" ? output : JSON.stringify(output) });
  }

  close(code = 1000) {
    // Idempotent; resolves with {code, reason} once the socket is closed.
    if (this.ws.readyState === WebSocket.CONNECTING || this.ws.readyState === WebSocket.OPEN) {
      this.ws.close(code);
    }
    return this.closed;
  }

  _send(message) {
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  _onMessage(e) {
    let frame;
    if (e.data instanceof ArrayBuffer) {
      frame = { type: "audio", pcm: new Int16Array(e.data, 0, e.data.byteLength >> 1), sampleRate: this.outputSampleRate };
    } else {
      try { frame = JSON.parse(e.data); } catch { return; }
      if (frame.type === "close") { this.closeCode = frame.code; this.closeReason = frame.reason || ""; }
    }
    for (const key of [frame.type, "*"]) {
      for (const handler of this.handlers.get(key) || []) {
        try { handler(frame); } catch (err) { console.error("speko handler failed", err); }
      }
    }
  }
}

export function connect({ url, token, inputSampleRate = 24000, outputSampleRate = 24000 }) {
  // Resolves once the socket is open; rejects if it cannot open.
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, [token]);
    ws.binaryType = "arraybuffer";
    const session = new RealtimeSession(ws, { inputSampleRate, outputSampleRate });
    ws.addEventListener("open", () => resolve(session), { once: true });
    ws.addEventListener("error", () => reject(new Error("could not open " + url)), { once: true });
  });
}
