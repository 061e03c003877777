"""The page `twostream view` serves: one tile per source, updated from /events (Server-Sent Events).

Kept as a string in a module so it ships with the package without package-data rules.
Everything from the network is inserted with textContent / encodeURIComponent, never as HTML.
"""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>twostream view</title>
<style>
  :root { color-scheme: dark; }
  body { margin: 0; font: 14px/1.35 system-ui, sans-serif; background: #111418; color: #e6e6e6; }
  header { display: flex; gap: 1em; align-items: baseline; padding: 10px 16px; background: #1a1f26; }
  header h1 { font-size: 16px; margin: 0; }
  header .conn { color: #9aa4b1; font-size: 12px; }
  header .conn.down { color: #ff7b72; }
  #tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 14px; padding: 14px; }
  #empty { padding: 24px 16px; color: #9aa4b1; }
  .tile { background: #1a1f26; border-radius: 8px; overflow: hidden; border: 1px solid #2a313b; }
  .tile .head { display: flex; justify-content: space-between; align-items: center; padding: 6px 10px; }
  .tile .name { font-weight: 600; }
  .state { font-size: 12px; padding: 1px 8px; border-radius: 9px; background: #3a414b; }
  .state.live { background: #1f6f3b; } .state.reconnecting, .state.starting { background: #8a6d1a; }
  .state.ended { background: #3a414b; } .state.failed, .state.silent { background: #8b2b2b; }
  .frame { position: relative; background: #000; aspect-ratio: 4 / 3; display: flex; align-items: center;
           justify-content: center; }
  .frame img { width: 100%; height: 100%; object-fit: contain; display: none; }
  .frame img.shown { display: block; }
  .frame .noprev { color: #6b7480; font-size: 12px; padding: 1em; text-align: center; }
  .frame .overlay { position: absolute; left: 8px; top: 8px; background: rgba(0,0,0,.62); padding: 2px 8px;
                    border-radius: 4px; font-size: 18px; font-weight: 600; }
  .frame .overlay .score { font-weight: 400; color: #b8c0cc; margin-left: .4em; }
  .frame .fno { position: absolute; right: 6px; bottom: 4px; font-size: 11px; color: #c9d1d9;
                background: rgba(0,0,0,.5); padding: 0 5px; border-radius: 3px; }
  .body { padding: 8px 10px 10px; }
  .row { display: grid; grid-template-columns: 8.5em 1fr 3.2em; gap: 6px; align-items: center; margin: 3px 0; }
  .row .lbl { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  .bar { height: 10px; background: #2a313b; border-radius: 5px; overflow: hidden; }
  .bar > div { height: 100%; background: #3fb950; }
  .row:not(:first-child) .bar > div { background: #6e7681; }
  .row .sc { text-align: right; font-variant-numeric: tabular-nums; }
  .streams, .meta { font-size: 12px; color: #9aa4b1; margin-top: 6px; font-variant-numeric: tabular-nums; }
  .timeline { display: flex; flex-wrap: wrap; gap: 4px; margin-top: 8px; }
  .chip { font-size: 11px; padding: 1px 6px; border-radius: 3px; color: #0d1117; }
  .error { color: #ff7b72; font-size: 12px; margin-top: 6px; }
</style>
</head>
<body>
<header><h1>twostream view</h1><span class="conn" id="conn">connecting…</span></header>
<div id="empty">Waiting for a publisher…</div>
<div id="tiles"></div>
<script>
"use strict";
const tiles = new Map();
const $ = (el, sel) => el.querySelector(sel);

function hue(label) {
  let h = 0;
  for (const c of label) h = (h * 31 + c.codePointAt(0)) % 360;
  return h;
}
function fmt(x, digits) { return (x === null || x === undefined) ? "–" : Number(x).toFixed(digits); }

function makeTile(name) {
  const t = document.createElement("div");
  t.className = "tile";
  t.dataset.source = name;
  t.innerHTML = `
    <div class="head"><span class="name"></span><span class="state"></span></div>
    <div class="frame"><img class="preview" alt=""><div class="noprev">no preview frames
      (run the pipeline with --preview)</div>
      <div class="overlay"><span class="label"></span><span class="score"></span></div>
      <div class="fno"></div></div>
    <div class="body"><div class="top"></div><div class="streams"></div><div class="meta"></div>
      <div class="timeline"></div><div class="error"></div></div>`;
  $(t, ".name").textContent = name;
  const img = $(t, "img");
  t._img = { el: img, loading: false, want: null, shown: null };
  img.addEventListener("load", () => {
    img.classList.add("shown");
    $(t, ".noprev").style.display = "none";
    imgDone(t);
  });
  img.addEventListener("error", () => imgDone(t));
  document.getElementById("tiles").appendChild(t);
  tiles.set(name, t);
  return t;
}

// One image request at a time per tile; the newest wanted preview wins.
function imgDone(t) {
  const s = t._img;
  s.loading = false;
  if (s.want !== null && s.want !== s.shown) loadImg(t);
}
function loadImg(t) {
  const s = t._img;
  if (s.loading) return;
  s.loading = true;
  s.shown = s.want;
  s.el.src = `/frame/${encodeURIComponent(t.dataset.source)}.jpg?v=${s.want}`;
}

function render(src) {
  const t = tiles.get(src.source) || makeTile(src.source);
  const state = $(t, ".state");
  state.textContent = src.state;
  state.className = "state " + src.state;
  t.dataset.state = src.state;
  t.dataset.seq = src.seq === null ? "" : String(src.seq);
  t.dataset.frame = src.frame === null ? "" : String(src.frame);
  $(t, ".label").textContent = src.label || "waiting for the first window";
  $(t, ".score").textContent = src.label ? fmt(src.score, 2) : "";

  const top = $(t, ".top");
  top.replaceChildren(...src.top.map((e) => {
    const row = document.createElement("div");
    row.className = "row";
    const lbl = document.createElement("span"); lbl.className = "lbl"; lbl.textContent = e.label;
    const bar = document.createElement("div"); bar.className = "bar";
    const fill = document.createElement("div");
    fill.style.width = `${Math.max(0, Math.min(1, e.score)) * 100}%`;
    bar.appendChild(fill);
    const sc = document.createElement("span"); sc.className = "sc"; sc.textContent = fmt(e.score, 2);
    row.append(lbl, bar, sc);
    return row;
  }));
  $(t, ".streams").textContent = src.streams  // one entry per network of the bundle (spatial, temporal, ...)
    ? Object.entries(src.streams).map(([name, x]) => `${name} ${x.label} ${fmt(x.score, 2)}`).join(" · ")
    : "";
  $(t, ".meta").textContent =
    `latency ${fmt(src.latency_ms, 0)} ms · capture ${fmt(src.capture_fps, 1)} fps · ` +
    `${fmt(src.predictions_per_s, 1)} predictions/s · dropped ${src.dropped}` +
    (src.reconnects ? ` · reconnects ${src.reconnects}` : "");
  const tl = $(t, ".timeline");
  tl.replaceChildren(...src.timeline.map((seg) => {
    const c = document.createElement("span");
    c.className = "chip";
    c.style.background = `hsl(${hue(seg.label)} 60% 65%)`;
    c.textContent = seg.count > 1 ? `${seg.label} ×${seg.count}` : seg.label;
    c.title = `frames ${seg.from_frame}–${seg.to_frame}`;
    return c;
  }));
  $(t, ".error").textContent = src.error || "";
  if (src.preview) {
    $(t, ".fno").textContent = `frame ${src.preview.frame}` + (src.frame !== null ? ` · window end ${src.frame}` : "");
    t._img.want = src.preview.version;
    if (t._img.want !== t._img.shown) loadImg(t);
  }
}

function connect() {
  const conn = document.getElementById("conn");
  const es = new EventSource("/events");
  es.onmessage = (ev) => {
    const snap = JSON.parse(ev.data);
    conn.textContent = `subscribed to ${snap.endpoint}` + (snap.malformed ? ` · ${snap.malformed} malformed` : "");
    conn.classList.remove("down");
    document.getElementById("empty").style.display = snap.sources.length ? "none" : "block";
    document.getElementById("empty").textContent = `Waiting for a publisher on ${snap.endpoint}…`;
    for (const src of snap.sources) render(src);
  };
  es.onerror = () => {  // EventSource retries by itself
    conn.textContent = "view server unreachable; retrying…";
    conn.classList.add("down");
  };
}
connect();
</script>
</body>
</html>
"""
