// Krystal live page: ASCII frames over a WebSocket, status once a second. No external scripts.
"use strict";
const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
const $ = (id) => document.getElementById(id);

function text(el, value) { el.textContent = value; }

function plot(name, points) {
  const canvas = $("plot-" + name);
  if (!canvas) return;
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  if (!points || points.length < 2) { ctx.fillStyle = "#88909c"; ctx.fillText("no data", 6, 14); return; }
  const t0 = points[0][0], t1 = points[points.length - 1][0] || 1e-3;
  let lo = Infinity, hi = -Infinity;
  for (const [, v] of points) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (hi - lo < 1e-6) { hi += 1; lo -= 1; }
  ctx.strokeStyle = "#88c0d0"; ctx.beginPath();
  points.forEach(([t, v], i) => {
    const x = ((t - t0) / (t1 - t0 || 1)) * (w - 4) + 2, y = h - 12 - ((v - lo) / (hi - lo)) * (h - 20);
    i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
  });
  ctx.stroke();
  ctx.fillStyle = "#d8dee9";
  ctx.fillText(`${points[points.length - 1][1].toFixed(1)}  (${lo.toFixed(1)}–${hi.toFixed(1)})`, 6, h - 2);
}

function showStatus(s) {
  if (s.style) {
    text($("style"), `${s.style.mode}/${s.style.kernel}/k${s.style.kernel_size} (${s.style.policy || "?"})`);
    text($("reason"), s.style.reason || "");
  }
  const health = s.health || { level: "?", nodes: [] };
  const level = $("level");
  text(level, health.level); level.className = health.level;
  const rows = health.nodes.map((n) => {
    const tr = document.createElement("tr");
    const name = document.createElement("td"); name.textContent = n.name;
    const lv = document.createElement("td"); lv.textContent = n.level; lv.className = n.level;
    const msg = document.createElement("td"); msg.textContent = n.message;
    tr.append(name, lv, msg);
    return tr;
  });
  $("health").replaceChildren(...rows);
  for (const [name, points] of Object.entries(s.history || {})) plot(name, points);
}

// Every message is parsed strictly (JSON.parse rejects NaN); the counts are on <body> for tests.
const counts = { messages: 0, unparsed: 0 };
function count(key) { counts[key] += 1; document.body.dataset[key] = String(counts[key]); }

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${proto}//${location.host}${location.pathname.replace(/[^/]*$/, "")}ws` +
    (token ? `?token=${encodeURIComponent(token)}` : "");
  const ws = new WebSocket(url);
  ws.onopen = () => text($("conn"), "live");
  ws.onclose = (e) => { text($("conn"), `disconnected (${e.reason || e.code}); retrying`); setTimeout(connect, 2000); };
  ws.onmessage = (event) => {
    let msg;
    try { msg = JSON.parse(event.data); } catch (err) { count("unparsed"); return; }
    count("messages");
    if (msg.type === "frame") {
      text($("ascii"), msg.lines.join("\n"));
      text($("grid"), `${msg.columns}x${msg.rows} ${msg.mode}, ${msg.render_time_ms == null ? "?" : msg.render_time_ms.toFixed(1)} ms`);
    } else if (msg.type === "status") {
      showStatus(msg);
    }
  };
}
connect();
