// Reply playback on the audio thread (a 24 kHz context): a queue of chunks, each tagged with its speech id.
// It counts the samples actually played per speech and reports them, so an interrupt can tell the server
// how many seconds of that speech the user heard. "clear" drops everything queued at once.

class PcmPlayer extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = []; // {speechId, samples: Float32Array, offset}
    this.played = {}; // speechId -> samples played
    this.sinceReport = 0;
    this.port.onmessage = (event) => {
      const data = event.data;
      if (data.clear) {
        this.queue = [];
        this.report();
      } else if (data.samples) {
        this.queue.push({ speechId: data.speechId, samples: data.samples, offset: 0 });
      }
    };
  }

  report() {
    this.port.postMessage({ played: { ...this.played }, queued: this.queue.length > 0 });
    this.sinceReport = 0;
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    let written = 0;
    while (written < out.length && this.queue.length > 0) {
      const chunk = this.queue[0];
      const n = Math.min(out.length - written, chunk.samples.length - chunk.offset);
      out.set(chunk.samples.subarray(chunk.offset, chunk.offset + n), written);
      chunk.offset += n;
      written += n;
      this.played[chunk.speechId] = (this.played[chunk.speechId] || 0) + n;
      if (chunk.offset >= chunk.samples.length) this.queue.shift();
    }
    out.fill(0, written);
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    this.sinceReport += out.length;
    if (written > 0 && this.sinceReport >= sampleRate / 20) this.report();
    else if (written === 0 && this.sinceReport > 0 && this.wasPlaying) this.report();
    this.wasPlaying = written > 0;
    return true;
  }
}

registerProcessor("pcm-player", PcmPlayer);
