// The browser SDK from TypeScript, written the way the published contract shows. The SDK is
// an ES module served by the bridge, with its declarations next to it:
//   https://<bridge>/sdk/speko-realtime.js   and   https://<bridge>/sdk/speko-realtime.d.ts
// Map the import to them (tsconfig "paths", or a declare module), e.g.
//   "paths": {"speko-realtime": ["./speko-realtime.d.ts"]}
// tests/test_typescript.py checks this file with `tsc --noEmit --strict`.
import {
  connect, createPlayer, startCapture, SpekoError,
  type MintAnswer, type RealtimeFrame, type RealtimeSession,
} from "speko-realtime";

export async function talk(answer: MintAnswer, show: (line: string) => void): Promise<RealtimeSession> {
  let session: RealtimeSession;
  try {
    session = await connect(answer, { timeout: 5000 });
  } catch (err) {
    if (err instanceof SpekoError && err.code === "token_used") show("that token was used: mint a new one");
    throw err;
  }
  show(`session ${session.sessionId}, token valid until ${session.expiresAt}`);

  const off: () => void = session.on((frame: RealtimeFrame) => {
    switch (frame.type) {
      case "audio": {
        const bytes: Uint8Array = frame.pcm;             // PCM16 LE mono
        const rate: number = frame.sampleRate;
        show(`${bytes.byteLength / 2} samples at ${rate} Hz`);
        break;
      }
      case "transcript": if (frame.final) show(`${frame.role}: ${frame.text}`); break;
      case "tool_call": session.sendToolResult(frame.callId, { temp_c: 21 }); break;
      case "usage": show(`usage ${frame.inputAudioTokens}/${frame.outputAudioTokens}`); break;
      case "error": show(`error ${frame.code}: ${frame.message}`); break;
      case "close": show(`closed ${frame.code} ${frame.reason}`); break;
    }
  });
  session.on("transcript", (t) => { if (!t.final) show(t.text); });

  const player = createPlayer(session);                  // plays audio frames; interrupt() flushes it
  const mic = await startCapture(session, { live: false });
  await mic.resume();                                    // the user holds the talk button...
  mic.pause();                                           // ...and lets go
  session.commit();
  session.sendAudio(new Uint8Array(640));
  session.sendAudio(new Int16Array(320));
  session.interrupt();
  player.flush();
  off();
  const end: { code: number; reason: string } = await session.close(4000, "bye");
  show(`ended ${end.code} ${end.reason}`);
  return session;
}
