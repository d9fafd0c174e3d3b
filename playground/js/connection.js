// One websocket to /ws: sends init first, decodes every frame, and reconnects with a growing delay when the
// socket drops (not after a refused token, a refused agent or a hang-up by the user).

import { decodeFrame, encodeFrame } from "./protocol.js";

const JUNK = new TextEncoder().encode("undefined"); // what the Voi client appends to control messages

export function socketUrl(token) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws?token=${encodeURIComponent(token)}`;
}

export class Connection {
  constructor({ token, init, onMessage, onState }) {
    this.token = token;
    this.init = init;
    this.onMessage = onMessage;
    this.onState = onState;
    this.ws = null;
    this.closedByUser = false;
    this.attempt = 0;
    this.lastError = null;
    this.timer = null;
    this.opens = 0; // sockets opened: after the first, init asks for no greeting (it is a new conversation)
  }

  open() {
    this.closedByUser = false;
    this.lastError = null;
    this.onState(this.attempt ? "reconnecting" : "connecting");
    const ws = (this.ws = new WebSocket(socketUrl(this.token)));
    const reconnected = this.opens++ > 0;
    ws.binaryType = "arraybuffer";
    ws.onopen = () => this.send(reconnected ? { ...this.init, init_greeting: false } : this.init);
    ws.onmessage = (event) => {
      if (typeof event.data === "string") return;
      let frame;
      try { frame = decodeFrame(event.data); } catch (err) { console.warn("bad frame", err); return; }
      if (frame.header.type === "error") this.lastError = frame.header;
      if (frame.header.type === "status" && frame.header.status === "init_done") {
        this.attempt = 0;
        this.onState("ready", reconnected);
      }
      this.onMessage(frame.header, frame.payload);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      const code = this.lastError && this.lastError.code;
      if (this.closedByUser) return this.onState("closed");
      if (code === "bad_token") return this.onState("bad_token", this.lastError.error);
      if (event.code === 1008 || event.code === 1002) return this.onState("refused", this.lastError && this.lastError.error);
      const delay = Math.min(1000 * 2 ** this.attempt, 10000);
      this.attempt++;
      this.onState("dropped", `connection lost; reconnecting in ${Math.round(delay / 1000)} s`);
      this.timer = setTimeout(() => this.open(), delay);
    };
  }

  get ready() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  send(header, payload) {
    if (!this.ready) return false;
    this.ws.send(encodeFrame(header, header.type === "audio" ? payload : JUNK));
    return true;
  }

  close() {
    this.closedByUser = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
    this.ws = null;
  }
}
