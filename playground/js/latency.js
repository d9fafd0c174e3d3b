// The per-turn latency view: a horizontal bar split into the server's stages (end of speech -> transcript
// final -> first LLM token -> first audio sent), from the (ext) turn_metrics message, and under it the time
// this page measured from the end of speech (button release, Enter, or the mic going quiet in call mode)
// to the first reply audio it received. All bars share one scale so turns compare at a glance.

const bars = [];
let scaleMs = 1000;

function ms(value) {
  return value === undefined || value === null ? "-" : `${Math.round(value)} ms`;
}

// The three stage spans, each from where the previous one ended (a stage that did not happen is empty).
export function stageSpans(stages) {
  const stt = stages.transcript_final ?? 0;
  const llm = Math.max(stages.llm_first_token ?? stt, stt);
  const audio = Math.max(stages.first_audio_sent ?? llm, llm);
  return { stt, llm: llm - stt, tts: audio - llm, total: audio };
}

function render(bar) {
  const { spans, pageMs, element } = bar;
  element.replaceChildren();
  const track = document.createElement("div");
  track.className = "track";
  for (const name of ["stt", "llm", "tts"]) {
    const seg = document.createElement("div");
    seg.className = `seg ${name}`;
    seg.style.width = `${(100 * spans[name]) / scaleMs}%`;
    seg.title = `${name.toUpperCase()} ${ms(spans[name])}`;
    track.append(seg);
  }
  element.append(track);
  if (pageMs !== null) {
    const page = document.createElement("div");
    page.className = "page";
    page.style.width = `${Math.min(100, (100 * pageMs) / scaleMs)}%`;
    element.append(page);
  }
  const legend = document.createElement("div");
  legend.className = "legend";
  const item = (cls, label, value) => {
    const span = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.className = cls;
    const number = document.createElement("b");
    number.textContent = value;
    span.append(swatch, `${label} `, number);
    legend.append(span);
  };
  item("stt", "transcript", ms(spans.stt));
  item("llm", "first token", ms(spans.llm));
  item("tts", "first audio", ms(spans.tts));
  const total = document.createElement("span");
  total.className = "total";
  total.append("voice-to-voice ");
  const server = document.createElement("b");
  server.textContent = ms(spans.total);
  total.append(server, " (server)");
  legend.append(total);
  if (pageMs !== null) item("page", "heard here after", ms(pageMs));
  element.append(legend);
}

export function drawLatency(container, metrics, pageMs) {
  const spans = stageSpans(metrics.stages_ms || {});
  const element = document.createElement("div");
  element.className = "latency";
  element.dataset.voiceToVoiceMs = String(Math.round(spans.total));
  if (pageMs !== null) element.dataset.pageMs = String(Math.round(pageMs));
  container.append(element);
  const bar = { spans, pageMs, element };
  bars.push(bar);
  const longest = Math.max(spans.total, pageMs ?? 0);
  if (longest > scaleMs) {
    scaleMs = Math.ceil(longest / 500) * 500;
    bars.forEach(render);
  } else {
    render(bar);
  }
}
