// spike-host serve: the viewer page's script. One WebSocket (/ws): JSON "frame" (then a JPEG),
// "stats", "describe" and "error" messages in; exposure settings {"stops", "auto"} out.
"use strict";

const $ = (id) => document.getElementById(id);
let socket = null;
let pendingFrame = null;
let imageUrl = null;

function fmt(value, digits) {
  if (value === null || value === undefined) return "-";
  if (typeof value === "number") return digits === undefined ? String(value) : value.toFixed(digits);
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function fillTable(table, rows) {
  table.replaceChildren(...rows.map(([name, value, warn]) => {
    const tr = document.createElement("tr");
    const k = document.createElement("td");
    const v = document.createElement("td");
    k.textContent = name;
    v.textContent = value;
    if (warn) v.className = "warn";
    tr.append(k, v);
    return tr;
  }));
}

function latency(stats, stage) {
  const l = (stats.latency || {})[stage];
  return l ? `p50 ${fmt(l.p50_ms, 2)} ms, p99 ${fmt(l.p99_ms, 2)} ms` : "-";
}

function showStats(s) {
  const d = s.drops || {};
  const daemon = s.daemon || {};
  $("fps").textContent = fmt(s.fps, 1);
  const connected = s.connected && !s.eos;
  $("connection").textContent = s.eos ? `ended (${s.eos})` : (connected ? "streaming" : `waiting for ${s.url}`);
  $("connection").className = connected ? "ok" : "bad";
  fillTable($("stats"), [
    ["frames/s received", fmt(s.fps, 1)],
    ["frames/s published", fmt(daemon.fps, 1)],
    ["capture -> browser", latency(s, "capture_to_receive")],
    ["inference", latency(s, "inference")],
    ["publish -> receive", latency(s, "publish_to_receive")],
    ["frames received", fmt(s.frames)],
    ["method / shape", `${fmt(s.method)} ${s.shape ? s.shape.join("x") : ""}`],
    ["ring overrun planes", fmt(d.ring_overrun_planes), d.ring_overrun_planes > 0],
    ["skipped windows", fmt(d.worker_skipped_windows), d.worker_skipped_windows > 0],
    ["discontinuities", fmt(d.discontinuities), d.discontinuities > 0],
    ["gaps (lost frames)", `${fmt(d.gaps)} (${fmt(d.lost_frames)})`, d.gaps > 0],
    ["reconnects", fmt(d.reconnects), d.reconnects > 0],
    ["daemon state", fmt(daemon.state)],
    ["subscribers", fmt(daemon.subscribers)],
  ]);
}

function showDescribe(msg) {
  if (!msg.ok) {
    fillTable($("describe"), [["control", fmt(msg.control)], ["error", fmt(msg.error), true]]);
    return;
  }
  $("stream").textContent = msg.stream_id || "";
  const rows = Object.entries(msg).filter(([k]) => k !== "type" && k !== "ok").map(([k, v]) => [k, fmt(v)]);
  fillTable($("describe"), rows);
}

function showFrame(blob) {
  const url = URL.createObjectURL(blob);
  const img = $("video");
  const meta = pendingFrame;
  img.onload = () => {
    if (imageUrl) URL.revokeObjectURL(imageUrl);
    imageUrl = url;
    if (meta) {
      $("seq").textContent = meta.seq;
      $("key").textContent = meta.key_plane;
      $("shown").textContent = meta.shown;
    }
  };
  img.src = url;
}

function sendExposure() {
  const stops = parseFloat($("brightness").value);
  $("stops").textContent = `${stops >= 0 ? "+" : ""}${stops.toFixed(1)} stops`;
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ stops: stops, auto: $("auto").checked }));
  }
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  socket = new WebSocket(scheme + location.host + "/ws");
  socket.binaryType = "blob";
  socket.onopen = sendExposure;
  socket.onmessage = (event) => {
    if (typeof event.data !== "string") {
      showFrame(event.data);
      return;
    }
    const msg = JSON.parse(event.data);
    if (msg.type === "frame") pendingFrame = msg;
    else if (msg.type === "stats") showStats(msg);
    else if (msg.type === "describe") showDescribe(msg);
    else if (msg.type === "error") console.warn("viewer:", msg.error);
  };
  socket.onclose = () => {
    $("connection").textContent = "viewer disconnected; retrying";
    $("connection").className = "bad";
    setTimeout(connect, 1000);
  };
}

$("brightness").addEventListener("input", sendExposure);
$("auto").addEventListener("change", sendExposure);
connect();
