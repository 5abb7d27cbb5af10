// speko-capture-worklet.js: the AudioWorklet behind startCapture() in speko-realtime.js.
// Microphone Float32 at the AudioContext's rate -> PCM16 at processorOptions.targetRate,
// posted to the page as Int16Array chunks of CHUNK_MS. When the context already runs at the
// target rate (Chromium, Safari) samples pass through; otherwise (a browser that refuses a
// microphone on a context at another rate) they are resampled by linear interpolation.
const CHUNK_MS = 20; // the size the bridge and the providers handle best; any size is legal

class SpekoCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.target = (options.processorOptions && options.processorOptions.targetRate) || sampleRate;
    this.step = sampleRate / this.target; // input samples per output sample
    this.pos = 0; // fractional read position into the current block
    this.last = 0; // the previous block's last sample, for interpolation across blocks
    this.chunk = new Int16Array(Math.round((this.target * CHUNK_MS) / 1000));
    this.filled = 0;
  }

  push(s) {
    const c = Math.max(-1, Math.min(1, s));
    this.chunk[this.filled++] = c < 0 ? c * 0x8000 : c * 0x7fff;
    if (this.filled === this.chunk.length) {
      this.port.postMessage(this.chunk.slice(0));
      this.filled = 0;
    }
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    if (this.step === 1) {
      for (let i = 0; i < channel.length; i++) this.push(channel[i]);
      return true;
    }
    // position -1 is the previous block's last sample
    while (this.pos < channel.length - 1) {
      const i = Math.floor(this.pos);
      const a = i < 0 ? this.last : channel[i];
      const b = channel[i + 1];
      this.push(a + (b - a) * (this.pos - i));
      this.pos += this.step;
    }
    this.pos -= channel.length;
    this.last = channel[channel.length - 1];
    return true;
  }
}
registerProcessor("speko-capture", SpekoCapture);
