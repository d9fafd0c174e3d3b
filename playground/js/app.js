// The playground: picks an agent, holds one conversation over the Voi protocol (the same frames as the Voi
// client), shows transcripts, streaming replies and narrator asides, plays the reply, and draws each turn's
// latency. State a test can read is mirrored on window.voiPlayground.

import { AuthError, forgetToken, listAgents, rememberToken, tokenFromApiKey, tokenFromPage } from "./auth.js";
import { Microphone, Player } from "./audio.js";
import { Connection } from "./connection.js";
import { drawLatency } from "./latency.js";
import { textOf } from "./protocol.js";

const $ = (id) => document.getElementById(id);
const LOUD = 0.02; // mic RMS above this counts as speech for the page's own end-of-speech estimate

const state = {
  token: null, agents: [], connection: null, mode: "chat", agent: null,
  holding: false, flushing: false, muted: false, busy: false,
  bubbles: new Map(), dropped: new Set(), speeches: [], turnStart: null, pageMs: {},
  loud: false, speechEndAt: null, lastAudioAt: -Infinity,
};
const debug = (window.voiPlayground = {
  state: "idle", framesSent: 0, audioBytesReceived: 0, playedSeconds: 0, interrupts: [], pageMs: state.pageMs,
  errors: [],
  dropSocket: () => state.connection && state.connection.ws && state.connection.ws.close(4000), // for tests
});

const player = new Player({
  onPlayed: (played) => {
    debug.playedSeconds = Object.values(played).reduce((a, b) => a + b, 0) / 24000;
    debug.playing = player.playing;
  },
});
const mic = new Microphone({ onFrame: sendFrame, onLevel: showLevel });

// ---- status line and system notes ----

function setStatus(kind, text) {
  $("status-dot").className = `dot ${kind}`;
  $("status-text").textContent = text;
}

function note(text, bad = false) {
  const line = document.createElement("p");
  line.className = `system${bad ? " bad" : ""}`;
  line.textContent = text;
  $("conversation").append(line);
  line.scrollIntoView({ block: "nearest" });
}

// ---- getting in ----

function showAuth(message) {
  setStatus(message ? "bad" : "", "sign-in needed");
  $("auth").hidden = false;
  $("setup").hidden = true;
  const notice = $("auth-message");
  if (message) {
    notice.textContent = message;
    notice.classList.add("bad");
  }
  $("token-input").focus();
}

async function useToken(token) {
  state.token = token;
  try {
    state.agents = await listAgents(token);
  } catch (err) {
    forgetToken();
    if (err instanceof AuthError) {
      showAuth(`That token was refused: ${err.message}. Paste a new token, or type the API key to get one.`);
    } else {
      showAuth(`Could not reach the server: ${err.message}`);
    }
    return;
  }
  rememberToken(token);
  $("auth").hidden = true;
  const select = $("agent-select");
  select.replaceChildren(...state.agents.map((a) => new Option(`${a.title} (${a.name})`, a.name)));
  const preferred = new URL(location.href).searchParams.get("agent");
  if (preferred && state.agents.some((a) => a.name === preferred)) select.value = preferred;
  describeAgent();
  $("setup").hidden = false;
  setStatus("", "pick an agent and start");
  $("start").focus();
}

function describeAgent() {
  const agent = state.agents.find((a) => a.name === $("agent-select").value);
  $("agent-description").textContent = agent ? agent.description : "";
}

// ---- the conversation ----

async function start() {
  state.agent = $("agent-select").value;
  state.mode = document.querySelector("input[name=mode]:checked").value;
  $("setup").hidden = true;
  $("controls").hidden = false;
  $("talk").hidden = state.mode !== "chat";
  $("listening").hidden = state.mode !== "call";
  await player.start(); // inside the click: the browser lets it play
  try {
    await mic.start();
  } catch (err) {
    note(`The microphone is not available (${err.message}): you can still type.`, true);
  }
  connect();
  $("text-input").focus();
}

function connect() {
  const init = {
    type: "init", agent_name: state.agent, agent_config: null, mode: state.mode, stream_user_stt: true,
    final_stt_correction: true, stream_output_audio: true, init_greeting: true,
    send_turn_metrics: true, // (ext) the latency view
    send_tool_events: true, // (ext) the agent's tool calls in the transcript
  };
  state.connection = new Connection({ token: state.token, init, onMessage, onState });
  state.connection.open();
}

function onState(kind, detail) {
  debug.state = kind;
  const where = `${state.agent} (${state.mode})`;
  if (kind === "connecting" || kind === "reconnecting") {
    // A new conversation on the server: its message and speech ids start again from 0.
    state.bubbles.clear();
    state.speeches = [];
    state.dropped = new Set();
    state.turnStart = null;
    setStatus("wait", kind === "connecting" ? `connecting to ${where}...` : "reconnecting...");
  }
  else if (kind === "ready") {
    setStatus("ok", `connected: ${where}`);
    if (detail) note("Reconnected: a new conversation on the server.");
  } else if (kind === "dropped") {
    stopPlayback(false);
    state.busy = false;
    setStatus("bad", detail);
    note(detail, true);
  } else if (kind === "bad_token") {
    hangUp();
    forgetToken();
    showAuth(`The server refused the token (${detail}). Paste a new token, or type the API key to get one.`);
  } else if (kind === "refused") {
    setStatus("bad", "refused");
    note(`The server refused the conversation: ${detail || "no reason given"}`, true);
  }
}

function onMessage(header, payload) {
  switch (header.type) {
    case "status": return onStatus(header);
    case "message": return showMessage(header);
    case "audio": return onAudio(header.speech_id, payload);
    case "turn_metrics": return onTurnMetrics(header);
    case "tool_call": return showToolCall(header);
    case "tool_done": return showToolDone(header);
    case "error":
      debug.errors.push(header);
      return note(`Error: ${header.error}`, true);
    default: return undefined; // unknown types are ignored, as the protocol asks
  }
}

function onStatus(header) {
  const status = header.status;
  if (status === "response_created") {
    state.busy = true;
    if (state.mode === "call" && state.turnStart === null) state.turnStart = state.speechEndAt ?? performance.now();
  } else if (status === "response_done" || status === "response_cancelled") {
    state.busy = false; // the reply's text is complete (its last message may still say final: false)
    document.querySelectorAll(".msg.assistant.streaming").forEach((b) => b.classList.remove("streaming"));
    if (status === "response_cancelled" && header.reason === "no_input") {
      state.turnStart = null;
      note("Nothing was heard in that turn.");
    }
  } else if (status === "user_interrupt") {
    stopPlayback(false); // the server already stopped this speech
  }
}

function renderText(element, text) {
  element.replaceChildren();
  text.split(/(@[^@]*@)/).forEach((part) => {
    if (!part) return;
    if (part.length > 1 && part.startsWith("@") && part.endsWith("@")) {
      const aside = document.createElement("span");
      aside.className = "aside";
      aside.title = "narrator";
      aside.textContent = part.slice(1, -1).trim();
      element.append(aside);
    } else {
      element.append(part);
    }
  });
}

function showMessage(header) {
  const key = `${header.role}:${header.id}`;
  let bubble = state.bubbles.get(key);
  if (!bubble) {
    bubble = document.createElement("div");
    bubble.className = `msg ${header.role}`;
    bubble.dataset.id = String(header.id);
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = header.role === "user" ? "you" : state.agent;
    const text = document.createElement("div");
    text.className = "text";
    bubble.append(who, text);
    $("conversation").append(bubble);
    state.bubbles.set(key, bubble);
  }
  const text = textOf(header.content);
  renderText(bubble.querySelector(".text"), text);
  const partial = header.final === false;
  bubble.classList.toggle("partial", partial && header.role === "user");
  bubble.classList.toggle("streaming", partial && header.role === "assistant");
  bubble.classList.toggle("cut", text.endsWith("(interrupted)"));
  bubble.scrollIntoView({ block: "nearest" });
}

// (ext) A tool call of the agent: its name and arguments, then its result or error and the time it took.
function showToolCall(call) {
  const card = document.createElement("div");
  card.className = "msg tool running";
  card.dataset.callId = call.call_id;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = call.side === "client" ? "tool (client)" : "tool";
  const name = document.createElement("div");
  name.className = "call";
  name.textContent = `${call.name}(${call.arguments})`;
  const result = document.createElement("div");
  result.className = "result";
  result.textContent = call.side === "client" ? "for the client to run" : "running...";
  card.append(who, name, result);
  $("conversation").append(card);
  card.scrollIntoView({ block: "nearest" });
}

function showToolDone(done) {
  const card = document.querySelector(`.msg.tool[data-call-id="${CSS.escape(done.call_id)}"]`);
  if (!card) return;
  card.classList.remove("running");
  card.classList.toggle("failed", !done.ok);
  const shown = done.ok ? done.output : `error: ${done.error || done.output}`;
  card.querySelector(".result").textContent = `${shown.length > 300 ? shown.slice(0, 300) + "..." : shown} `
    + `(${Math.round(done.elapsed_ms)} ms)`;
}

function onAudio(speechId, payload) {
  if (state.dropped.has(speechId)) return;
  debug.audioBytesReceived += payload.byteLength;
  state.lastAudioAt = performance.now();
  if (!state.speeches.includes(speechId)) {
    state.speeches.push(speechId);
    if (state.turnStart !== null && speechId !== "0") {
      state.pageMs[speechId] = performance.now() - state.turnStart;
      state.turnStart = null;
    }
  }
  player.push(speechId, payload);
}

function onTurnMetrics(metrics) {
  const bubble = state.bubbles.get(`assistant:${metrics.speech_id}`);
  if (!bubble || bubble.querySelector(".latency")) return;
  drawLatency(bubble, metrics, state.pageMs[metrics.speech_id] ?? null);
}

// Stops the reply now; with tell=true the server learns how much of it was heard (like the Voi client).
function stopPlayback(tell = true) {
  const speechId = state.speeches[state.speeches.length - 1];
  if (speechId === undefined || state.dropped.has(speechId)) return;
  const heard = player.playedSeconds(speechId);
  // Between two sentences of a reply still being written the player may be empty for a moment: the speech
  // counts as going on while its response is open or its audio came in the last second.
  const stillPlaying = player.playing || state.busy || performance.now() - state.lastAudioAt < 1000;
  if (tell && !stillPlaying) return; // the whole speech was heard: nothing to cut
  state.dropped.add(speechId);
  player.clear();
  if (tell && stillPlaying && state.connection) {
    const message = { type: "interrupt", speech_id: speechId, interrupted_at: Number(heard.toFixed(3)) };
    state.connection.send(message);
    debug.interrupts.push(message);
  }
}

// ---- the microphone ----

function sendFrame(frame) {
  const sending = state.mode === "call" ? !state.muted : state.holding || state.flushing;
  if (!sending || !state.connection || !state.connection.ready) return;
  if (state.connection.send({ type: "audio" }, frame)) debug.framesSent++;
}

function showLevel(level) {
  const shown = state.muted ? 0 : Math.min(1, Math.sqrt(level) * 2);
  $("meter-fill").style.width = `${Math.round(shown * 100)}%`;
  const loud = level > LOUD && !state.muted;
  debug.level = level;
  if (loud) debug.loudAt = performance.now();
  if (state.loud && !loud) state.speechEndAt = performance.now();
  state.loud = loud;
}

function press() {
  if (state.mode !== "chat" || state.holding || !state.connection) return;
  stopPlayback();
  state.holding = true;
  $("talk").classList.add("held");
}

async function release() {
  if (!state.holding) return;
  state.holding = false;
  state.flushing = true;
  $("talk").classList.remove("held");
  const releasedAt = performance.now();
  await mic.flush(); // the last partial frame, padded with silence
  state.flushing = false;
  if (state.connection && state.connection.send({ type: "create_response" })) state.turnStart = releasedAt;
}

function sendText(event) {
  event.preventDefault();
  const input = $("text-input");
  const content = input.value.trim();
  if (!content || !state.connection || !state.connection.ready) return;
  stopPlayback();
  state.connection.send({ type: "text", content });
  state.connection.send({ type: "create_response" });
  state.turnStart = performance.now();
  input.value = "";
}

function toggleMute() {
  state.muted = !state.muted;
  $("mute").setAttribute("aria-pressed", String(state.muted));
  $("mute").textContent = state.muted ? "Mic muted" : "Mute mic";
}

function hangUp() {
  if (state.connection) state.connection.close();
  state.connection = null;
  stopPlayback(false);
  mic.stop();
  $("controls").hidden = true;
  $("setup").hidden = false;
  setStatus("", "not connected");
}

// ---- wiring ----

function typing(target) {
  return target instanceof HTMLInputElement || target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement;
}

function wire() {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token-input").value.trim();
    if (token) useToken(token);
  });
  $("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("key-input");
    const key = input.value;
    input.value = ""; // the key lives only in this function's frame
    if (!key) return;
    try {
      await useToken(await tokenFromApiKey(key));
    } catch (err) {
      showAuth(err.message);
    }
  });
  $("agent-select").addEventListener("change", describeAgent);
  $("start").addEventListener("click", start);
  const talk = $("talk");
  talk.addEventListener("pointerdown", (event) => { talk.setPointerCapture(event.pointerId); press(); });
  talk.addEventListener("pointerup", release);
  talk.addEventListener("pointercancel", release);
  $("mute").addEventListener("click", toggleMute);
  $("stop").addEventListener("click", () => stopPlayback());
  $("hangup").addEventListener("click", hangUp);
  $("text-form").addEventListener("submit", sendText);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") return stopPlayback();
    if (event.code !== "Space" || typing(event.target) || $("controls").hidden) return undefined;
    if (event.target instanceof HTMLButtonElement && event.target !== talk) return undefined;
    event.preventDefault();
    if (!event.repeat) press();
    return undefined;
  });
  document.addEventListener("keyup", (event) => {
    if (event.code === "Space" && state.holding) {
      event.preventDefault();
      release();
    }
  });
}

wire();
const token = tokenFromPage();
if (token) useToken(token);
else showAuth();
