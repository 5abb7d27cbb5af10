// One turn through the bridge's OpenAI-compatible endpoint with OpenAI's Agents SDK
// realtime transport (@openai/agents-realtime), unchanged but for the URL and the key:
//   node agents_realtime_turn.mjs <ws url> <minted token> <pcm16 24 kHz file>
// Prints one JSON line: audio bytes heard, the assistant transcript, errors.
import { readFileSync } from 'node:fs';
import { OpenAIRealtimeWebSocket } from '@openai/agents-realtime';

const [url, token, pcmPath] = process.argv.slice(2);
const transport = new OpenAIRealtimeWebSocket({ url });
const result = { audioBytes: 0, transcript: '', userTranscript: '', responseDone: 0, errors: [], events: [] };

const done = new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error('no response.done within 30 s')), 30000);
  transport.on('audio', (event) => { result.audioBytes += event.data.byteLength; });
  transport.on('*', (event) => {
    result.events.push(event.type);
    if (event.type === 'response.output_audio_transcript.done') result.transcript = event.transcript;
    if (event.type === 'conversation.item.input_audio_transcription.completed') result.userTranscript = event.transcript;
    if (event.type === 'response.done') { result.responseDone += 1; clearTimeout(timer); resolve(); }
  });
  transport.on('error', (event) => { result.errors.push(event.error ?? String(event)); });
});

await transport.connect({
  apiKey: token,
  model: 'gpt-realtime',
  initialSessionConfig: { audio: { input: { turnDetection: null } } },
});
const pcm = readFileSync(pcmPath);
transport.sendAudio(pcm.buffer.slice(pcm.byteOffset, pcm.byteOffset + pcm.byteLength), { commit: true });
transport.sendEvent({ type: 'response.create' });
await done;
transport.close();
if (!process.env.SPEKO_DEBUG_EVENTS) delete result.events;
console.log(JSON.stringify(result));
