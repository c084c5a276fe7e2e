// A transcript as a file: SRT, WebVTT or text, and its download (the speaker's and the viewers' pages).
// cues: [{startMs, endMs, text, second}] in order; `second`, when set, is the cue's second line.
function clock(ms, sep) {
  const pad = (n, w = 2) => String(Math.floor(n)).padStart(w, "0");
  return `${pad(ms / 3600000)}:${pad((ms / 60000) % 60)}:${pad((ms / 1000) % 60)}${sep}${pad(ms % 1000, 3)}`;
}

export function transcript(cues, format) {
  const body = (c) => (c.second ? `${c.text}\n${c.second}` : c.text);
  if (format === "srt") {
    return cues.map((c, i) => `${i + 1}\n${clock(c.startMs, ",")} --> ${clock(c.endMs, ",")}\n${body(c)}\n\n`).join("");
  }
  if (format === "vtt") {
    return "WEBVTT\n\n" + cues.map((c) => `${clock(c.startMs, ".")} --> ${clock(c.endMs, ".")}\n${body(c)}\n\n`).join("");
  }
  return cues.map((c) => `[${clock(c.startMs, ".")}] ${body(c).replace("\n", "\n    ")}\n`).join("");
}

export function download(cues, format, name) {
  const types = { srt: "application/x-subrip", vtt: "text/vtt", txt: "text/plain" };
  const blob = new Blob([transcript(cues, format)], { type: `${types[format]};charset=utf-8` });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `${name}.${format}`;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}
