// The Voi wire protocol's framing (docs/PROTOCOL.md section 2): one binary frame per message,
// uint32 big-endian JSON length | UTF-8 JSON header | optional raw payload.

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export const INPUT_RATE = 16000; // microphone audio sent to the server
export const OUTPUT_RATE = 24000; // reply audio from the server
export const AUDIO_FRAME_BYTES = 8192; // 256 ms of 16 kHz PCM16, as the Voi client sends

export function encodeFrame(header, payload) {
  const json = encoder.encode(JSON.stringify(header));
  const extra = payload ? new Uint8Array(payload) : new Uint8Array(0);
  const frame = new Uint8Array(4 + json.length + extra.length);
  new DataView(frame.buffer).setUint32(0, json.length, false);
  frame.set(json, 4);
  frame.set(extra, 4 + json.length);
  return frame.buffer;
}

export function decodeFrame(buffer) {
  const view = new DataView(buffer);
  if (buffer.byteLength < 4) throw new Error("frame shorter than 4 bytes");
  const length = view.getUint32(0, false);
  if (4 + length > buffer.byteLength) throw new Error("frame length past its end");
  const header = JSON.parse(decoder.decode(new Uint8Array(buffer, 4, length)));
  return { header, payload: buffer.slice(4 + length) };
}

// The text of a message's content parts (images are not shown as text).
export function textOf(content) {
  if (typeof content === "string") return content;
  return (content || []).filter((p) => p.type === "text").map((p) => p.text).join(" ");
}
