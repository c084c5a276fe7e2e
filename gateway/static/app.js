// Babelstream web client: microphone -> AudioWorklet -> PCM16 over WebSocket; live captions back.
import { reachFrom } from "./languages.js";
import { download } from "./subtitles.js";
// Query parameters: ?source=es&target=pt&also=en&autostart=1 (used by the end-to-end tests).
let LANGS = {};  // code -> name, from GET /languages
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = {
  ws: null, sessionId: null, audio: null, stopping: false, retries: 0, queue: [], lastFinal: -1,
  utterances: new Map(),  // utterance_index -> {startMs, endMs, text, translation, endedAt, latencyMs}
};

function utterance(id) {
  if (!state.utterances.has(id)) state.utterances.set(id, { text: "", translation: "" });
  return state.utterances.get(id);
}

const ROUTE_LABEL = { whisper: "Whisper" };
let ROUTES = {};  // spoken language -> {target: route}, from GET /languages

// Offer only the targets the spoken language can reach, labelled with their route; with the language
// detected, every target some language reaches (the server reports it when this one cannot).
function offerTargets() {
  const keep = $("target").value || params.get("target") || "";
  const keepAlso = new Set(selectedAlso().length ? selectedAlso() : (params.get("also") || "").split(","));
  const source = $("source").value;
  const reach = reachFrom(ROUTES, source);
  while ($("target").options.length > 1) $("target").remove(1);
  while ($("also").options.length) $("also").remove(0);
  for (const [code, route] of Object.entries(reach).sort()) {
    const via = source ? ` (${route.split("+").map((r) => ROUTE_LABEL[r] || r).join(" → ")})` : "";
    $("target").add(new Option(`${LANGS[code] || code}${via}`, code));
    $("also").add(new Option(`${LANGS[code] || code}${via}`, code, false, keepAlso.has(code)));
  }
  $("target").value = keep in reach ? keep : "";
}

// the first target, then the others the user picked (each once): the session's target_langs
function selectedAlso() {
  return [...$("also").selectedOptions].map((o) => o.value);
}
function targets() {
  const first = $("target").value;
  return first ? [...new Set([first, ...selectedAlso()])] : [];
}
const languagesLoaded = fetch("/languages").then((r) => r.json()).then((body) => {
  LANGS = body.languages;
  ROUTES = body.routes;
  const byName = Object.entries(LANGS).sort((a, b) => a[1].localeCompare(b[1]));
  for (const [code, name] of byName) $("source").add(new Option(name, code));
  $("source").value = params.get("source") || "";
  offerTargets();
}).catch(() => status("could not load the languages", true));

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function segment(id) {
  let el = document.querySelector(`.segment[data-id="${id}"]`);
  if (!el) {
    el = document.createElement("div");
    el.className = "segment interim";
    el.dataset.id = id;
    el.innerHTML = '<div class="text"></div><div class="translation"></div><div class="meta"></div>';
    const later = [...$("captions").children].find((s) => Number(s.dataset.id) > id);
    $("captions").insertBefore(el, later || null);
  }
  return el;
}

function onMessage(msg) {
  switch (msg.type) {
    case "ready":
      share(msg.broadcast);
      state.sessionId = msg.session_id;
      if (msg.resume_token) state.resumeToken = msg.resume_token;  // kept in memory only, never shown
      state.retries = 0;
      status(`${msg.resumed ? "resumed" : "connected"}: session ${msg.session_id}`);
      for (const chunk of state.queue.splice(0)) state.ws.send(chunk);
      break;
    case "realtime": {
      const el = segment(msg.utterance_index);
      if (!el.classList.contains("interim")) break;
      // a translated interim comes after newer text may have: it only updates the translation
      if (msg.translation && msg.target_lang === targets()[0]) el.querySelector(".translation").textContent = msg.translation;
      else el.querySelector(".text").textContent = msg.text;
      break;
    }
    case "broadcast":  // a rotated token: the old link admits nobody any more
      share(msg);
      break;
    case "utterance_end":
      utterance(msg.utterance_index).endedAt = performance.now();
      break;
    case "final": {
      state.lastFinal = Math.max(state.lastFinal, msg.utterance_index);
      const u = utterance(msg.utterance_index);
      Object.assign(u, { startMs: msg.audio_start_ms, endMs: msg.audio_end_ms, text: msg.text });
      // latency as this user lived it: from the end of speech (the VAD's utterance_end) to the final here
      if (u.endedAt !== undefined && u.latencyMs === undefined) u.latencyMs = performance.now() - u.endedAt;
      const el = segment(msg.utterance_index);
      el.classList.remove("interim");
      el.classList.add("final");
      el.querySelector(".text").textContent = msg.text;
      const after = u.latencyMs === undefined ? "" : ` · final ${(u.latencyMs / 1000).toFixed(2)} s after speech ended`;
      el.querySelector(".meta").textContent = `${msg.language || ""}${after} · decoded in ${msg.processing_ms} ms`;
      $("downloads").hidden = false;
      break;
    }
    case "translation": {
      // the first target's translation under the text, each other target's on a line of its own
      const el = segment(msg.utterance_index);
      if (msg.target_lang === targets()[0] || !targets().length) {
        utterance(msg.utterance_index).translation = msg.text;
        el.querySelector(".translation").textContent = msg.text;
        break;
      }
      let line = el.querySelector(`.translation-more[data-lang="${msg.target_lang}"]`);
      if (!line) {
        line = document.createElement("div");
        line.className = "translation-more";
        line.dataset.lang = msg.target_lang;
        el.insertBefore(line, el.querySelector(".meta"));
      }
      line.textContent = `${msg.target_lang}: ${msg.text}`;
      break;
    }
    case "error":
      status(`${msg.code}: ${msg.message}`, true);
      if (msg.code === "session_taken_over") state.stopping = true;  // resumed elsewhere: do not fight it
      if (msg.code === "forbidden" || msg.code === "unknown_session") {
        state.sessionId = null;  // the session cannot be resumed: the next connection starts a new one
        state.resumeToken = null;
      }
      break;
  }
}

// The Share panel: the viewer link and its QR code (a resumed speaker is not told the token again: the
// first one is kept)
function share(b) {
  if (!b) return;
  if (b.viewer_token) state.viewerToken = b.viewer_token;
  const query = !b.public && state.viewerToken ? `?token=${encodeURIComponent(state.viewerToken)}` : "";
  const path = `/watch/${encodeURIComponent(b.broadcast_id)}`;
  $("share-link").href = $("share-link").textContent = `${location.origin}${path}${query}`;
  $("share-qr").src = `${path}/qr.png${query}`;
  $("share").hidden = b.ended;
}

async function connect() {
  const config = await (await fetch("/config.json")).json();
  // a key or token given to the page (?token=...) goes along as a query parameter: browsers cannot set headers
  const token = new URLSearchParams(location.search).get("token");
  const scheme = config.tls ? "wss" : "ws";
  const query = token ? `?token=${encodeURIComponent(token)}` : "";
  const ws = new WebSocket(`${scheme}://${location.hostname}:${config.ws_port}/${query}`);
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  ws.onopen = () => {
    const start = { type: "start", sample_rate: state.audio.context.sampleRate, encoding: "pcm_s16le" };
    if (state.sessionId) {  // resume after a disconnect; results we lack are sent again
      start.session_id = state.sessionId;
      start.resume_token = state.resumeToken;
      start.received_up_to = state.lastFinal;
    }
    if ($("source").value) start.source_lang = $("source").value;
    if ($("broadcast").checked) start.broadcast = true;
    if (targets().length) { start.target_langs = targets(); start.translate = true; }
    ws.send(JSON.stringify(start));
  };
  ws.onmessage = (e) => onMessage(JSON.parse(e.data));
  ws.onclose = () => {
    if (state.stopping) return status("stopped");
    const delay = Math.min(10000, 500 * 2 ** state.retries++);
    status(`connection lost; reconnecting in ${delay} ms`, true);
    setTimeout(connect, delay);
  };
}

function toPcm16(samples) {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) out[i] = Math.max(-1, Math.min(1, samples[i])) * 32767;
  return out.buffer;
}

async function start() {
  state.stopping = false;
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  const context = new AudioContext();
  await context.audioWorklet.addModule("/static/worklet.js");
  const node = new AudioWorkletNode(context, "babelstream-capture");
  context.createMediaStreamSource(stream).connect(node);
  state.audio = { stream, context, node };
  node.port.onmessage = (e) => {
    const pcm = toPcm16(e.data);
    if (state.ws && state.ws.readyState === WebSocket.OPEN && state.sessionId) state.ws.send(pcm);
    else if (state.queue.length < 100) state.queue.push(pcm);  // bounded while (re)connecting
  };
  await connect();
  $("start").disabled = true;
  $("stop").disabled = false;
}

function stop() {
  state.stopping = true;
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify({ type: "stop" }));
  if (state.audio) {
    state.audio.stream.getTracks().forEach((t) => t.stop());
    state.audio.context.close();
  }
  $("start").disabled = false;
  $("stop").disabled = true;
}

// The session's transcript as a file (subtitles.js); a translation is the cue's second line.
function cues() {
  return [...state.utterances.entries()]
    .filter(([, u]) => u.text && u.startMs !== undefined)
    .sort(([a], [b]) => a - b)
    .map(([, u]) => ({ startMs: u.startMs, endMs: u.endMs, text: u.text, second: u.translation }));
}

for (const format of ["srt", "vtt", "txt"]) {
  $(`download-${format}`).onclick = () => download(cues(), format, `babelstream-${state.sessionId || "session"}`);
}

for (const id of ["source", "target", "also"]) {
  $(id).onchange = () => {
    if (id === "source") offerTargets();
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return;
    state.ws.send(JSON.stringify({
      type: "set_langs", source_lang: $("source").value || null, target_langs: targets(), translate: targets().length > 0,
    }));
  };
}
$("broadcast").checked = params.get("broadcast") === "1";
$("start").onclick = () => start().catch((e) => status(`microphone: ${e.message}`, true));
$("stop").onclick = stop;
if (params.get("autostart")) {
  languagesLoaded.then(start).catch((e) => status(`microphone: ${e.message}`, true));
}
window.babelstream = state;
