// Babelstream viewer page: /watch/<broadcast_id>?token=...&lang=pt[&overlay=1&lines=2&font=...&size=48&color=fff]
// Watches the broadcast over WebSocket (the gateway's /watch path): the transcript so far, then live
// captions in the chosen language; reconnects with the last position it has, so nothing is missed.
import { reachFrom } from "./languages.js";
import { download } from "./subtitles.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const broadcastId = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] || "");
const overlay = params.get("overlay") === "1";
const state = {
  ws: null, lang: params.get("lang") || "", position: -1, retries: 0, ended: false, sourceLang: null,
  captions: new Map(),  // utterance_index -> {text, original, startMs, endMs, final}
};

if (overlay) {
  document.body.classList.add("overlay");
  const main = $("captions").style;
  if (params.get("font")) main.fontFamily = params.get("font");
  if (params.get("size")) main.fontSize = `${Number(params.get("size")) || 32}px`;
  if (params.get("color")) main.color = `#${params.get("color").replace(/[^0-9a-fA-F]/g, "")}`;
}
const lines = Math.max(1, Number(params.get("lines")) || 2);

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function render(index) {
  const c = state.captions.get(index);
  let el = document.querySelector(`.caption[data-id="${index}"]`);
  if (!el) {
    el = document.createElement("div");
    el.className = "caption";
    el.dataset.id = index;
    el.innerHTML = '<span class="text"></span><span class="original"></span>';
    const later = [...$("captions").children].find((x) => Number(x.dataset.id) > index);
    $("captions").insertBefore(el, later || null);
  }
  el.classList.toggle("interim", !c.final);
  el.classList.toggle("final", c.final);
  el.classList.toggle("untranslated", Boolean(c.untranslated));
  el.querySelector(".text").textContent = c.text;
  el.querySelector(".original").textContent = c.original && c.original !== c.text ? c.original : "";
  if (overlay) {  // the last lines only
    const all = [...$("captions").children];
    all.forEach((x, i) => { x.hidden = i < all.length - lines; });
  } else if (window.scrollY + window.innerHeight >= document.body.scrollHeight - 200) {
    el.scrollIntoView({ block: "end" });
  }
}

function onMessage(msg) {
  switch (msg.type) {
    case "watching":
      state.retries = 0;
      state.sourceLang = msg.source_lang;
      status(msg.ended ? "the broadcast has ended" : "live");
      break;
    case "live":
      status(state.ended ? "the broadcast has ended" : "live");
      break;
    case "realtime": {
      const c = state.captions.get(msg.utterance_index);
      if (c && c.final) break;
      state.captions.set(msg.utterance_index, {
        text: msg.text, original: msg.original_text, startMs: msg.audio_start_ms, endMs: msg.audio_end_ms, final: false,
      });
      render(msg.utterance_index);
      break;
    }
    case "final":
      state.position = Math.max(state.position, msg.position);
      state.captions.set(msg.utterance_index, {
        text: msg.text, original: msg.original_text, startMs: msg.audio_start_ms, endMs: msg.audio_end_ms,
        final: true, untranslated: msg.untranslated,
      });
      render(msg.utterance_index);
      break;
    case "ended":
      state.ended = true;
      status("the broadcast has ended");
      break;
    case "error":
      status(`${msg.code}: ${msg.message}`, true);
      if (["unknown_broadcast", "viewer_token_rotated"].includes(msg.code)) state.ended = true;  // do not retry
      break;
  }
}

async function offerLanguages() {
  const body = await (await fetch("/languages")).json();
  const info = await fetch(`/v1/broadcasts/${encodeURIComponent(broadcastId)}?${new URLSearchParams(
    params.get("token") ? { token: params.get("token") } : {})}`).then((r) => (r.ok ? r.json() : {}));
  const source = info.source_lang;
  const reach = reachFrom(body.routes, source);
  const codes = Object.keys(reach).filter((c) => c !== source).sort();
  for (const code of codes) $("lang").add(new Option(body.languages[code] || code, code));
  if (source) $("lang").options[0].text = `${body.languages[source] || source} (the speaker's)`;
  $("lang").value = codes.includes(state.lang) ? state.lang : "";
}

async function connect() {
  const config = await (await fetch("/config.json")).json();
  const ws = new WebSocket(`${config.tls ? "wss" : "ws"}://${location.hostname}:${config.ws_port}/watch`);
  state.ws = ws;
  ws.onopen = () => {
    const watch = { type: "watch", broadcast_id: broadcastId, after: state.position };
    if (params.get("token")) watch.viewer_token = params.get("token");
    if (state.lang) watch.lang = state.lang;
    ws.send(JSON.stringify(watch));
  };
  ws.onmessage = (e) => onMessage(JSON.parse(e.data));
  ws.onclose = () => {
    if (state.ended) return;
    const delay = Math.min(10000, 500 * 2 ** state.retries++);
    status(`connection lost; reconnecting in ${delay} ms`, true);
    setTimeout(connect, delay);
  };
}

$("lang").onchange = () => {
  state.lang = $("lang").value;
  state.captions.clear();  // the transcript comes again, in the new language
  $("captions").replaceChildren();
  state.position = -1;
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify({ type: "set_lang", lang: state.lang || null }));
  }
};

function cues() {
  return [...state.captions.entries()]
    .filter(([, c]) => c.final && c.text)
    .sort(([a], [b]) => a - b)
    .map(([, c]) => ({ startMs: c.startMs, endMs: c.endMs, text: c.text }));
}
for (const format of ["srt", "vtt", "txt"]) {
  $(`download-${format}`).onclick = () => download(cues(), format, `babelstream-${broadcastId}-${state.lang || "original"}`);
}

if (!overlay) offerLanguages().catch(() => status("could not load the languages", true));
connect();
window.babelstream = state;
