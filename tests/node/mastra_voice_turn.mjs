// Two spoken turns through the bridge's OpenAI-compatible endpoint with Mastra's realtime
// voice (@mastra/voice-openai-realtime), unchanged but for its `url` option and the minted
// token as its API key:
//   node mastra_voice_turn.mjs <base ws url> <minted token> <pcm16 24 kHz speech file> <vad|answer|tool>
// A live microphone: a stream fed 20 ms at a time at real-time pace, silence unless the user
// speaks (the microphone stays open). The user says the speech, waits for the spoken answer,
// says it again. `vad`: the server's voice activity detection ends each turn; `answer`: the
// app calls answer() when the speech ends (Mastra's push-to-talk pattern: a response.create
// over audio nobody committed); `tool`: as `vad`, with a tool (addTools) the model calls and
// Mastra runs, answering with its result. Prints one JSON line: every server event type, errors, what
// Mastra's `writing` and `speaking` events carried.
import { readFileSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { OpenAIRealtimeVoice } from '@mastra/voice-openai-realtime';
import { z } from 'zod';

const [url, token, pcmPath, mode] = process.argv.slice(2);
const CHUNK = 2 * 24000 * 20 / 1000; // 20 ms of PCM16 at 24 kHz
const SETTLE_MS = 700; // after the answer: room for a late duplicate transcript or error
const result = { events: [], errors: [], user: '', assistant: '', speakingBytes: 0, responses: [] };

const voice = new OpenAIRealtimeVoice({ url, apiKey: token });
result.tools = [];
if (mode === 'tool') {
  voice.addTools({
    get_weather: {
      description: 'Get the weather for a city.',
      inputSchema: z.object({ city: z.string() }),
      execute: async ({ city }) => ({ city, temp_c: 21 }),
    },
  });
  voice.on('tool-call-result', ({ toolName, args, result: output }) => result.tools.push({ toolName, args, output }));
}
for (const name of ['session.created', 'session.updated', 'input_audio_buffer.speech_started',
  'input_audio_buffer.speech_stopped', 'input_audio_buffer.committed', 'conversation.item.added',
  'conversation.item.input_audio_transcription.delta',
  'conversation.item.input_audio_transcription.completed', 'response.created',
  'response.output_audio.done', 'response.output_audio_transcript.done', 'response.done', 'error']) {
  voice.on(`openAIRealtime:${name}`, () => result.events.push(name));
}
voice.on('error', (e) => result.errors.push(e?.error ?? e?.message ?? String(e)));
voice.on('writing', ({ text, role }) => { result[role === 'user' ? 'user' : 'assistant'] += text; });
voice.on('speaking', ({ audio }) => { result.speakingBytes += audio.length; });

const TURNS = 2;
let turn = 0;
let heardUser = false; // the user's words of this turn came back
let spoken = 0; // answer audio bytes of this turn
voice.on('conversation.item.input_audio_transcription.completed', () => { heardUser = true; });
voice.on('speaking', ({ audio }) => { spoken += audio.length; });

const mic = new PassThrough();
const silence = Buffer.alloc(CHUNK);
const speech = readFileSync(pcmPath);
let queued = []; // chunks of speech still to send
const say = () => {
  for (let i = 0; i < speech.length; i += CHUNK) queued.push(speech.subarray(i, i + CHUNK));
};

const answered = new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error('no spoken answers within 25 s: ' + JSON.stringify(result))), 25000);
  voice.on('response.done', (ev) => {
    result.responses.push(ev.response.status);
    if (!heardUser || spoken === 0) return; // not this turn's answer (OpenAI: answer() before the VAD's turn)
    turn += 1;
    heardUser = false;
    spoken = 0;
    if (turn < TURNS) say();
    else { clearTimeout(timer); resolve(); }
  });
});

await voice.connect();
await voice.send(mic);
const start = Date.now();
let sent = 0;
let open = true;
say();
(async () => {
  while (open) {
    if (queued.length) {
      mic.write(queued.shift());
      if (!queued.length && mode === 'answer') {
        // the user is done (a button released, a tick later than the microphone's last chunk)
        await new Promise((r) => setImmediate(r));
        await voice.answer({});
      }
    } else mic.write(silence);
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
  voice.close();
}
console.log(JSON.stringify(result));
process.exit(0);
