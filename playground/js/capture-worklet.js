// Microphone capture on the audio thread: resampled to 16 kHz (a box filter over each output sample's span
// of input samples), converted to PCM16 with clipping, posted as frames of 8192 bytes; plus the level (RMS)
// about every 50 ms for the meter. "flush" posts the partial frame padded with silence.

const OUT_RATE = 16000;
const FRAME_SAMPLES = 4096;

class Pcm16Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / OUT_RATE; // input samples per output sample
    this.pos = 0; // where the next output sample's span starts, in input samples of this block
    this.sum = 0;
    this.count = 0;
    this.frame = new Int16Array(FRAME_SAMPLES);
    this.filled = 0;
    this.levelSum = 0;
    this.levelCount = 0;
    this.port.onmessage = (event) => {
      if (event.data === "flush") {
        if (this.filled > 0) this.post(true);
        else this.port.postMessage({ flushed: true });
      }
    };
  }

  post(flushed = false) {
    const frame = this.frame;
    frame.fill(0, this.filled);
    this.port.postMessage({ frame: frame.buffer, flushed }, [frame.buffer]);
    this.frame = new Int16Array(FRAME_SAMPLES);
    this.filled = 0;
  }

  push(value) {
    const clipped = Math.max(-1, Math.min(1, value));
    this.frame[this.filled++] = clipped < 0 ? clipped * 0x8000 : clipped * 0x7fff;
    if (this.filled === FRAME_SAMPLES) this.post();
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i++) {
      const x = channel[i];
      this.levelSum += x * x;
      this.levelCount++;
      if (this.step <= 1) { this.push(x); continue; } // a 16 kHz (or slower) context: as is
      this.sum += x;
      this.count++;
      this.pos += 1;
      if (this.pos >= this.step) {
        this.pos -= this.step;
        this.push(this.sum / this.count);
        this.sum = 0;
        this.count = 0;
      }
    }
    if (this.levelCount >= sampleRate / 20) {
      this.port.postMessage({ level: Math.sqrt(this.levelSum / this.levelCount) });
      this.levelSum = 0;
      this.levelCount = 0;
    }
    return true;
  }
}

registerProcessor("pcm16-capture", Pcm16Capture);
