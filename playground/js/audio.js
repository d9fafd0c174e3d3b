// The page's audio: the microphone (an AudioWorklet making 16 kHz PCM16 frames of 8192 bytes) and the
// reply player (an AudioWorklet in a 24 kHz context that stops at once and counts what was played).

import { OUTPUT_RATE } from "./protocol.js";

const BASE = "/playground/js/";

export class Microphone {
  constructor({ onFrame, onLevel }) {
    this.onFrame = onFrame;
    this.onLevel = onLevel;
    this.context = null;
    this.stream = null;
    this.node = null;
    this.pendingFlush = null;
  }

  async start() {
    if (this.context) return;
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    this.context = new AudioContext();
    await this.context.audioWorklet.addModule(BASE + "capture-worklet.js");
    const source = this.context.createMediaStreamSource(this.stream);
    this.node = new AudioWorkletNode(this.context, "pcm16-capture", { numberOfOutputs: 1 });
    const sink = this.context.createGain();
    sink.gain.value = 0; // the worklet must be pulled by the graph to run; nothing is heard
    source.connect(this.node).connect(sink).connect(this.context.destination);
    this.node.port.onmessage = (event) => {
      const data = event.data;
      if (data.level !== undefined) this.onLevel(data.level);
      if (data.frame) this.onFrame(data.frame);
      if (data.flushed && this.pendingFlush) {
        this.pendingFlush();
        this.pendingFlush = null;
      }
    };
    await this.context.resume();
  }

  // Resolves once the partial frame (padded with silence) has been handed to onFrame.
  flush() {
    if (!this.node) return Promise.resolve();
    return new Promise((resolve) => {
      this.pendingFlush = resolve;
      this.node.port.postMessage("flush");
      setTimeout(() => { if (this.pendingFlush === resolve) { this.pendingFlush = null; resolve(); } }, 500);
    });
  }

  stop() {
    if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
    if (this.context) this.context.close();
    this.context = this.stream = this.node = null;
  }
}

export class Player {
  constructor({ onPlayed } = {}) {
    this.onPlayed = onPlayed || (() => {});
    this.context = null;
    this.node = null;
    this.played = {}; // speech id -> samples played
    this.playing = false;
  }

  // Must run in a user gesture (a click or a key) so the browser lets the context play.
  async start() {
    if (this.context) return this.context.resume();
    this.context = new AudioContext({ sampleRate: OUTPUT_RATE, latencyHint: "interactive" });
    await this.context.audioWorklet.addModule(BASE + "player-worklet.js");
    this.node = new AudioWorkletNode(this.context, "pcm-player", { outputChannelCount: [1] });
    this.node.connect(this.context.destination);
    this.node.port.onmessage = (event) => {
      this.played = event.data.played;
      this.playing = event.data.queued;
      this.onPlayed(this.played, this.playing);
    };
    await this.context.resume();
  }

  push(speechId, pcm16) {
    if (!this.node || pcm16.byteLength < 2) return;
    const ints = new Int16Array(pcm16, 0, pcm16.byteLength >> 1);
    const samples = new Float32Array(ints.length);
    for (let i = 0; i < ints.length; i++) samples[i] = ints[i] / 32768;
    this.playing = true;
    this.node.port.postMessage({ speechId, samples }, [samples.buffer]);
  }

  playedSeconds(speechId) {
    return (this.played[speechId] || 0) / OUTPUT_RATE;
  }

  clear() {
    if (this.node) this.node.port.postMessage({ clear: true });
    this.playing = false;
  }

  close() {
    if (this.context) this.context.close();
    this.context = this.node = null;
  }
}
