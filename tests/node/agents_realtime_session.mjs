// OpenAI's Agents SDK for JavaScript (@openai/agents-realtime) at its defaults through the
// bridge's OpenAI-compatible endpoint: a RealtimeAgent with one tool in a RealtimeSession over
// WebSocket, unchanged but for `url` and the minted token as `apiKey`:
//   node agents_realtime_session.mjs <ws url> <minted token> <pcm16 24 kHz speech file>
// Its first session.update carries the agent's instructions and tools and its default
// semantic_vad; a live microphone (20 ms chunks at real-time pace: the speech, then silence)
// lets the server's VAD end the turn; the SDK runs the tool the model calls and sends the
// result. Prints one JSON line: raw server event types, tool runs, answer audio bytes, errors.
import { readFileSync } from 'node:fs';
import { RealtimeAgent, RealtimeSession, tool } from '@openai/agents-realtime';
import { z } from 'zod';

const [url, token, pcmPath] = process.argv.slice(2);
const CHUNK = 2 * 24000 * 20 / 1000; // 20 ms of PCM16 at 24 kHz
const SETTLE_MS = 500; // after the answer: room for a late error
const result = { events: [], errors: [], tools: [], audioAfterTool: 0, transcripts: [] };

const getWeather = tool({
  name: 'get_weather',
  description: 'Get the weather for a city.',
  parameters: z.object({ city: z.string() }),
  execute: async ({ city }) => JSON.stringify({ city, temp_c: 21 }),
});
const agent = new RealtimeAgent({ name: 'Assistant', instructions: 'Be brief.', tools: [getWeather] });
const session = new RealtimeSession(agent, { transport: 'websocket', model: 'gpt-realtime' });

let toolDone = false;
const answered = new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error('no spoken answer within 20 s: ' + JSON.stringify(result))), 20000);
  session.on('agent_tool_start', (_ctx, _agent, t, details) => result.tools.push({ name: t.name, args: details?.toolCall?.arguments }));
  session.on('agent_tool_end', (_ctx, _agent, t, output) => { toolDone = true; result.tools.push({ name: t.name, output }); });
  session.on('audio', (event) => { if (toolDone) result.audioAfterTool += event.data.byteLength; });
  session.on('error', (event) => result.errors.push('session error: ' + JSON.stringify(event?.error ?? event)));
  session.on('transport_event', (event) => {
    result.events.push(event.type);
    if (event.type === 'error') result.errors.push(JSON.stringify(event.error ?? event));
    if (event.type === 'conversation.item.input_audio_transcription.completed') result.transcripts.push(event.transcript);
    if (event.type === 'response.done' && toolDone && result.audioAfterTool > 0) { clearTimeout(timer); resolve(); }
  });
});

await session.connect({ apiKey: token, url });
const speech = readFileSync(pcmPath);
const silence = new Uint8Array(CHUNK);
const start = Date.now();
let sent = 0;
let open = true;
(async () => {
  for (let i = 0; open; i += CHUNK) {
    const chunk = i < speech.length ? speech.subarray(i, i + CHUNK) : silence;
    const copy = new Uint8Array(chunk); // an ArrayBuffer of its own, as a microphone hands out
    session.sendAudio(copy.buffer);
    sent += 20;
    const wait = start + sent - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
})();
try {
  await answered;
  await new Promise((r) => setTimeout(r, SETTLE_MS));
} finally {
  open = false;
  session.close();
}
console.log(JSON.stringify(result));
process.exit(0);
