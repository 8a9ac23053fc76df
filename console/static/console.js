// qwen_stack console page: state arrives as events over /ws/events, video as JPEG over /ws/video,
// controls are POSTs with the bearer token. No build step.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "qwen_stack_console_token";
const CONTROL_KEY = "qwen_stack_console_control_id";   // survives a reload of this tab while in control
// Teleop commands are numbered per take-over: two requests can overtake each other on the way, and the
// console ignores one older than the last it took (a held key's drive must never land after the release's
// zero). Kept with the control id so a reload goes on counting up.
const SEQ_KEY = "qwen_stack_console_teleop_seq";
const DRIVE_REFRESH_MS = 100;   // held keys are re-sent this often (the server's deadman is longer)

const page = {
  token: null,
  role: null,             // "viewer" | "controller"
  session: null,          // /api/session answer
  controlId: null,        // held while in control
  events: null,
  video: null,
  heartbeatTimer: null,
  approvals: new Map(),   // request_id -> {request, element}
  frames: 0,
};

// ---- credentials ------------------------------------------------------------------------------
function readToken() {
  const m = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (m) {   // a token in the fragment is taken once and removed from the address bar
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function authHeaders() {
  return page.token ? { Authorization: "Bearer " + page.token } : {};
}

async function api(method, path, body) {
  const init = { method, headers: { ...authHeaders() } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  let data = null;
  try { data = await r.json(); } catch (_) { /* empty body */ }
  return { status: r.status, ok: r.ok, data };
}

function detail(res) {
  if (!res.data) return "HTTP " + res.status;
  if (typeof res.data.detail === "string") return res.data.detail;
  if (res.data.message) return res.data.message;
  return "HTTP " + res.status;
}

async function signIn(token) {
  page.token = token || null;
  const res = await api("GET", "/api/session");
  if (!res.ok) {
    clearView();   // nothing of an earlier session stays on screen
    sessionStorage.removeItem(TOKEN_KEY);
    $("signin").hidden = false;
    $("signin-error").textContent = res.status === 401
      ? (token ? "Token not accepted: sign in with a valid token" : "Sign in with a token to view this robot")
      : detail(res);
    setConnection("Not signed in");
    return;
  }
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  page.session = res.data;
  page.role = res.data.role;
  page.controlId = page.role === "controller" ? sessionStorage.getItem(CONTROL_KEY) : null;
  $("signin").hidden = page.role === "controller";
  $("signin-error").textContent = "";
  applyRole();
  connectEvents();
  connectVideo();
}

function applyRole() {
  const control = page.role === "controller";
  for (const id of ["estop", "take-over", "reset", "cancel-task"]) $(id).disabled = !control;
  $("task-form").querySelector("button[type=submit]").disabled = !control;
  for (const b of document.querySelectorAll("#approvals button")) b.disabled = !control;
  if (!control) $("estop").title = "Sign in with the controller token to use the E-stop";
  else $("estop").removeAttribute("title");
}

function setConnection(text) { $("connection").textContent = text; }

// Signed out (a wrong token, a refused socket): close the sockets (no reconnect) and blank everything shown,
// so no frame, pose or task of an earlier session can be taken for the robot's present state.
function clearView() {
  stopDriving();
  stopHeartbeat();
  const events = page.events, video = page.video;
  page.events = page.video = null;
  if (events) events.close();
  if (video) video.close();
  page.role = null;
  page.controlId = null;
  page.frames = 0;
  const canvas = $("video");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  delete canvas.dataset.frames;
  $("video-info").textContent = "No video";
  renderEstop(null);
  for (const id of ["robot-pose", "robot-heading", "robot-speed"]) $(id).textContent = "unknown";
  renderAgentStatus(null, null);
  renderTask(null, true);
  $("tool-calls").replaceChildren();
  $("verdicts").replaceChildren();
  for (const id of [...page.approvals.keys()]) removeApproval(id);
  $("diagnostics").replaceChildren();
  renderTeleop(false);
  clearMap();
  applyRole();
}

// ---- WebSockets -------------------------------------------------------------------------------
function wsUrl(path) { return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path; }

function openSocket(path, onMessage, binary) {
  const ws = new WebSocket(wsUrl(path));
  if (binary) ws.binaryType = "blob";
  ws.addEventListener("open", () => ws.send(JSON.stringify({ type: "hello", token: page.token })));
  ws.addEventListener("message", onMessage);
  return ws;
}

function connectEvents() {
  if (page.events) page.events.close();
  const ws = openSocket("/ws/events", (ev) => handleEvent(JSON.parse(ev.data)));
  page.events = ws;
  ws.addEventListener("close", () => {
    // The heartbeat goes on (over HTTP) while the socket reconnects; signing out stops it (clearView).
    if (page.events !== ws) return;
    setConnection("Disconnected, reconnecting…");
    setTimeout(() => { if (page.events === ws) connectEvents(); }, 1000);
  });
}

// The camera, or perception's view of it (its boxes and labels drawn on the frames it processed).
function videoView() { return $("video-annotated").checked ? "annotated" : "camera"; }

function connectVideo() {
  if (page.video) page.video.close();
  let decoding = false, latest = null;
  const view = videoView();
  const canvas = $("video"), ctx = canvas.getContext("2d");
  canvas.dataset.view = view;
  canvas.setAttribute("aria-label", view === "annotated" ? "Live camera video, annotated by perception"
                                                        : "Live camera video");
  const draw = async () => {
    if (decoding || !latest) return;
    decoding = true;
    const blob = latest; latest = null;
    try {
      const bitmap = await createImageBitmap(blob);
      if (page.video !== ws) { bitmap.close(); decoding = false; return; }   // switched or signed out meanwhile
      if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
        canvas.width = bitmap.width; canvas.height = bitmap.height;
      }
      ctx.drawImage(bitmap, 0, 0);
      bitmap.close();
      page.frames += 1;
      canvas.dataset.frames = String(page.frames);
      $("video-info").textContent = `${canvas.width}×${canvas.height}, ${page.frames} frames` +
        (view === "annotated" ? " (perception)" : "");
    } catch (_) { /* a frame that does not decode is skipped */ }
    decoding = false;
    draw();
  };
  const ws = openSocket("/ws/video?view=" + view, (ev) => {
    if (typeof ev.data === "string") return;   // the session line
    if (page.video !== ws) return;              // a frame of the view just switched away from
    latest = ev.data;                           // only the newest frame is drawn
    draw();
  }, true);
  page.video = ws;
  ws.addEventListener("close", () => {
    setTimeout(() => { if (page.video === ws) connectVideo(); }, 1000);
  });
}

// Switching views blanks the picture until the other stream's first frame: a camera frame must not pass
// for perception's view, nor the other way round.
function switchVideoView() {
  if (!page.video) return;                      // not signed in: the next sign-in opens the chosen view
  page.frames = 0;
  const canvas = $("video");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  delete canvas.dataset.frames;
  $("video-info").textContent = videoView() === "annotated" ? "Waiting for perception's view…" : "No video yet";
  connectVideo();
}

// The heartbeat keeps the operator heartbeat alive and, while this tab holds control, the control itself:
// the server releases control (zero, lock released) when it stops for session_timeout_s (tab closed).
function sendHeartbeat() {
  if (page.events && page.events.readyState === WebSocket.OPEN) {
    page.events.send(JSON.stringify({ type: "heartbeat", control_id: page.controlId }));
  } else if (page.controlId) {   // the socket is reconnecting: control must not lapse meanwhile
    api("POST", "/api/teleop/heartbeat", { control_id: page.controlId }).then((res) => {
      if (res.status === 409) renderTeleop(false);
    });
  }
}

function startHeartbeat() {
  stopHeartbeat();
  if (page.role !== "controller") return;
  sendHeartbeat();
  page.heartbeatTimer = setInterval(sendHeartbeat, page.session.heartbeat_period_s * 1000);
}

function stopHeartbeat() {
  if (page.heartbeatTimer) clearInterval(page.heartbeatTimer);
  page.heartbeatTimer = null;
}

// ---- rendering ----------------------------------------------------------------------------------
function handleEvent(ev) {
  switch (ev.type) {
    case "session":
      setConnection(`Connected as ${ev.role}`);
      startHeartbeat();
      break;
    case "error": clearView(); setConnection(ev.detail); break;
    case "snapshot": renderSnapshot(ev); break;
    case "estop": renderEstop(ev.latched); break;
    case "robot": renderRobot(ev.robot); break;
    case "thinking": appendThinking(ev.text); break;
    case "agent_status": renderAgentStatus(ev.status, ev.summary); break;
    case "task": renderTask(ev.task, ev.clear_thinking); break;
    case "tool_call": renderToolCall(ev.call); break;
    case "verdict": renderVerdict(ev.verdict); break;
    case "approval_request": addApproval(ev.request); break;
    case "approval_resolved": removeApproval(ev.request_id); break;
    case "diagnostics": renderDiagnostics(ev.statuses); break;
    case "teleop": renderTeleop(ev.in_control); break;
    case "map": renderMap(ev.map); break;
  }
}

function renderSnapshot(s) {
  renderEstop(s.estop_latched);
  renderRobot(s.robot);
  renderAgentStatus(s.agent_status, s.agent_summary);
  renderTask(s.task, false);
  $("thinking").textContent = s.thinking || "";
  $("tool-calls").replaceChildren();
  for (const c of s.tool_calls) renderToolCall(c);
  $("verdicts").replaceChildren();
  for (const v of s.verdicts) renderVerdict(v);
  for (const id of [...page.approvals.keys()]) removeApproval(id);
  for (const a of s.approvals) addApproval(a);
  renderDiagnostics(s.diagnostics);
  renderTeleop(s.teleop_in_control);
  renderMap(s.map);
}

function renderEstop(latched) {
  const el = $("estop-state");
  el.dataset.latched = latched === null || latched === undefined ? "unknown" : String(latched);
  el.textContent = latched === true ? "E-stop LATCHED" : latched === false ? "E-stop released" : "E-stop state unknown";
}

const fmt = (x, d = 2) => (typeof x === "number" ? x.toFixed(d) : "?");

function renderRobot(r) {
  if (!r) return;
  $("robot-pose").textContent = `x ${fmt(r.x)} m, y ${fmt(r.y)} m`;
  $("robot-heading").textContent = `${fmt(r.theta * 180 / Math.PI, 0)}°`;
  $("robot-speed").textContent = `${fmt(r.linear)} m/s, ${fmt(r.angular)} rad/s`;
}

function appendThinking(text) {
  const el = $("thinking");
  const atBottom = el.scrollTop + el.clientHeight >= el.scrollHeight - 4;
  el.textContent += text;
  if (atBottom) el.scrollTop = el.scrollHeight;
}

function renderAgentStatus(status, summary) {
  $("agent-status").textContent = status === null || status === undefined ? "" : "Agent: " + (summary || "");
}

function renderTask(task, clearThinking) {
  if (clearThinking) $("thinking").textContent = "";
  if (!task) { $("task-state").textContent = "No task"; return; }
  const steps = typeof task.steps === "number" && task.steps > 0 ? `, ${task.steps} tool call${task.steps === 1 ? "" : "s"}` : "";
  const where = task.origin === "agent" ? " (started outside this console)" : "";
  $("task-state").textContent = `Task “${task.instruction}”: ${task.state}${steps}${task.message ? " — " + task.message : ""}${where}`;
}

function pre(value) {
  const p = document.createElement("pre");
  p.textContent = value === null || value === undefined ? "" : (typeof value === "string" ? value : JSON.stringify(value, null, 1));
  return p;
}

// A one-line summary, with the whole value behind a disclosure (collapsed, bounded in height).
function summaryCell(summary, value) {
  if (value === null || value === undefined || summary === "" && (typeof value !== "object" || !Object.keys(value).length)) {
    return summary || "—";
  }
  const details = document.createElement("details");
  const s = document.createElement("summary");
  s.textContent = summary || "details";
  details.append(s, pre(value));
  return details;
}

function verdictText(c) {
  if (!c.actuating) return "— (read-only)";
  if (!c.verdict) return "pending";
  return c.verdict.level_name + (c.verdict.reasons.length ? ": " + c.verdict.reasons.join("; ") : "");
}

function renderToolCall(c) {
  const key = `${c.task_id}#${c.step}`;
  let row = [...$("tool-calls").rows].find((r) => r.dataset.key === key);
  if (!row) {
    row = $("tool-calls").insertRow();
    row.dataset.key = key;
  }
  const cells = [String(c.step), c.name, summaryCell(c.arguments_summary, c.arguments), c.status, verdictText(c),
                 summaryCell(c.result_summary, c.result)];
  row.replaceChildren(...cells.map((v) => {
    const td = document.createElement("td");
    if (typeof v === "string") td.textContent = v; else td.append(v);
    return td;
  }));
  if (c.verdict) row.cells[4].className = "level-" + c.verdict.level_name;
  const wrap = $("tool-calls-wrap");
  wrap.scrollTop = wrap.scrollHeight;   // the newest call in view
}

function renderVerdict(v) {
  const li = document.createElement("li");
  li.className = v.idle ? "level-IDLE" : "level-" + v.level_name;
  const when = typeof v.time === "number" ? new Date(v.time * 1000).toLocaleTimeString() : "";
  li.textContent = v.idle ? `${when} idle: nothing commands motion, the base is held at zero`
    : `${when} ${v.level_name} ${v.source}${v.reasons.length ? ": " + v.reasons.join("; ") : ""}`;
  const list = $("verdicts");
  list.prepend(li);
  while (list.children.length > 50) list.lastChild.remove();
}

function renderDiagnostics(statuses) {
  $("diagnostics").replaceChildren(...statuses.map((s) => {
    const tr = document.createElement("tr");
    for (const v of [s.name, s.level_name, s.message]) {
      const td = document.createElement("td"); td.textContent = v; tr.append(td);
    }
    tr.cells[1].className = "diag-" + s.level_name;
    return tr;
  }));
}

// ---- approvals ----------------------------------------------------------------------------------
function addApproval(req) {
  removeApproval(req.request_id);
  const li = document.createElement("li");
  li.setAttribute("aria-label", `Approval request ${req.service}`);
  const h = document.createElement("h3");
  h.textContent = req.service;
  const args = pre(req.arguments);
  args.setAttribute("aria-label", "Arguments");
  const countdown = document.createElement("p");
  countdown.setAttribute("role", "timer");
  const approve = document.createElement("button");
  approve.type = "button"; approve.textContent = "Approve";
  approve.setAttribute("aria-label", `Approve ${req.service}`);
  const deny = document.createElement("button");
  deny.type = "button"; deny.textContent = "Deny";
  deny.setAttribute("aria-label", `Deny ${req.service}`);
  const result = document.createElement("p");
  result.setAttribute("role", "alert");
  approve.addEventListener("click", () => answerApproval(req.request_id, true, result));
  deny.addEventListener("click", () => answerApproval(req.request_id, false, result));
  li.append(h, args, countdown, approve, deny, result);
  $("approvals").append(li);
  const tick = () => {
    const left = Math.max(0, Math.ceil(req.deadline - Date.now() / 1000));
    countdown.textContent = `Denied by default in ${left} s`;
  };
  tick();
  const timer = setInterval(tick, 250);
  page.approvals.set(req.request_id, { li, timer });
  $("approvals-empty").hidden = true;
  applyRole();
}

function removeApproval(id) {
  const a = page.approvals.get(id);
  if (!a) return;
  clearInterval(a.timer);
  a.li.remove();
  page.approvals.delete(id);
  $("approvals-empty").hidden = page.approvals.size > 0;
}

async function answerApproval(id, approved, resultEl) {
  const res = await api("POST", `/api/approvals/${encodeURIComponent(id)}`, { approved });
  if (!res.ok) resultEl.textContent = detail(res);
}

// ---- e-stop -------------------------------------------------------------------------------------
async function pressEstop() {
  stopDriving();
  const res = await api("POST", "/api/estop");
  if (!res.ok) $("estop-state").textContent = "E-stop request failed: " + detail(res);
}

function openReset() {
  $("reset-error").textContent = "";
  $("reset-reason").value = "";
  $("reset-dialog").showModal();
}

async function confirmReset(ev) {
  ev.preventDefault();
  const reason = $("reset-reason").value.trim();
  if (!reason) { $("reset-error").textContent = "A reason is needed"; return; }
  const res = await api("POST", "/api/estop/reset", { reason });
  if (res.ok && res.data.ok) $("reset-dialog").close();
  else if (res.status === 504) $("reset-error").textContent = "Reset sent, no answer yet: " + detail(res);
  else if (res.status === 503) $("reset-error").textContent = "Reset not sent: " + detail(res);
  else $("reset-error").textContent = "Reset refused: " + detail(res);
}

// ---- take over and driving ----------------------------------------------------------------------
const KEYS = {
  KeyW: [1, 0], ArrowUp: [1, 0], KeyS: [-1, 0], ArrowDown: [-1, 0],
  KeyA: [0, 1], ArrowLeft: [0, 1], KeyD: [0, -1], ArrowRight: [0, -1],
};
const held = new Set();
let driveTimer = null, lastSent = "0,0", gamepadActive = false;

function renderTeleop(inControl) {
  $("teleop-state").textContent = inControl ? (page.controlId ? "You are in control" : "An operator is in control")
    : "Autonomy in control";
  if (!inControl) { page.controlId = null; sessionStorage.removeItem(CONTROL_KEY); stopDriving(); }
  $("take-over").hidden = Boolean(page.controlId);
  $("hand-back").hidden = !page.controlId;
}

async function takeOver() {
  const res = await api("POST", "/api/teleop/take_over");
  if (!res.ok) { $("teleop-state").textContent = "Take over refused: " + detail(res); return; }
  page.controlId = res.data.control_id;
  sessionStorage.setItem(CONTROL_KEY, page.controlId);
  sessionStorage.setItem(SEQ_KEY, "0");   // the console counts afresh for each take-over
  sendHeartbeat();
  renderTeleop(true);
}

async function handBack() {
  if (!page.controlId) return;
  stopDriving();
  const id = page.controlId;
  page.controlId = null;
  sessionStorage.removeItem(CONTROL_KEY);
  await api("POST", "/api/teleop/hand_back", { control_id: id });
  renderTeleop(false);
}

function currentCommand() {
  let lin = 0, ang = 0;
  for (const k of held) { lin += KEYS[k][0]; ang += KEYS[k][1]; }
  const t = page.session.teleop;
  return [Math.sign(lin) * t.max_linear, Math.sign(ang) * t.max_angular];
}

function nextSeq() {
  const seq = Number(sessionStorage.getItem(SEQ_KEY) || 0) + 1;
  sessionStorage.setItem(SEQ_KEY, String(seq));
  return seq;
}

async function sendCommand(lin, ang) {
  if (!page.controlId) return;
  lastSent = `${lin},${ang}`;
  $("drive-state").textContent = lin === 0 && ang === 0 ? "Not driving" : `Driving: ${fmt(lin)} m/s, ${fmt(ang)} rad/s`;
  const res = await api("POST", "/api/teleop/command",
                        { control_id: page.controlId, linear: lin, angular: ang, seq: nextSeq() });
  if (res.status === 409) renderTeleop(false);
}

function driveFromKeys() {
  const [lin, ang] = currentCommand();
  sendCommand(lin, ang);
  if (lin === 0 && ang === 0) { clearInterval(driveTimer); driveTimer = null; }
}

function stopDriving() {
  held.clear();
  if (driveTimer) { clearInterval(driveTimer); driveTimer = null; }
  if (lastSent !== "0,0") sendCommand(0, 0);
}

function typingInField(ev) {
  const t = ev.target;
  return t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t.isContentEditable;
}

document.addEventListener("keydown", (ev) => {
  if (!page.controlId || !(ev.code in KEYS) || typingInField(ev) || $("reset-dialog").open) return;
  ev.preventDefault();
  if (held.has(ev.code)) return;   // auto-repeat
  held.add(ev.code);
  driveFromKeys();
  if (!driveTimer) driveTimer = setInterval(driveFromKeys, DRIVE_REFRESH_MS);
});

document.addEventListener("keyup", (ev) => {
  if (!held.has(ev.code)) return;
  held.delete(ev.code);
  driveFromKeys();   // release: the new (possibly zero) command goes out at once
});

window.addEventListener("blur", stopDriving);
document.addEventListener("visibilitychange", () => { if (document.hidden) stopDriving(); });

// Gamepad: left stick drives while button 0 (A / cross) is held; releasing it sends zero.
function pollGamepad() {
  const pads = navigator.getGamepads ? [...navigator.getGamepads()].filter(Boolean) : [];
  if (page.controlId && pads.length) {
    const p = pads[0], t = page.session.teleop;
    const dz = (v) => (Math.abs(v) < 0.15 ? 0 : v);
    if (p.buttons[0] && p.buttons[0].pressed) {
      gamepadActive = true;
      sendCommand(-dz(p.axes[1] || 0) * t.max_linear, -dz(p.axes[0] || 0) * t.max_angular);
    } else if (gamepadActive) {
      gamepadActive = false;
      sendCommand(0, 0);
    }
  }
  setTimeout(pollGamepad, DRIVE_REFRESH_MS);
}

// ---- tasks --------------------------------------------------------------------------------------
async function startTask(ev) {
  ev.preventDefault();
  const instruction = $("instruction").value.trim();
  if (!instruction) { $("task-state").textContent = "Type an instruction first"; return; }
  const res = await api("POST", "/api/task", { instruction });
  if (res.status === 504) $("task-state").textContent = "Task sent, no answer yet: " + detail(res);
  else if (!res.ok || !res.data.ok) $("task-state").textContent = "Task not started: " + detail(res);
}

async function cancelTask() {
  const res = await api("POST", "/api/task/cancel");
  if (!res.ok || !res.data.ok) $("task-state").textContent = "Cancel: " + detail(res);
}

// ---- wiring -------------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  $("estop").addEventListener("click", pressEstop);
  $("reset").addEventListener("click", openReset);
  $("reset-form").addEventListener("submit", confirmReset);
  $("reset-cancel").addEventListener("click", () => $("reset-dialog").close());
  $("take-over").addEventListener("click", takeOver);
  $("hand-back").addEventListener("click", handBack);
  $("task-form").addEventListener("submit", startTask);
  $("cancel-task").addEventListener("click", cancelTask);
  $("video-annotated").addEventListener("change", switchVideoView);
  $("signin").addEventListener("submit", (ev) => { ev.preventDefault(); signIn($("token").value.trim()); });
  window.addEventListener("pagehide", () => { stopDriving(); });
  pollGamepad();
  signIn(readToken());
});

// ---- map ----------------------------------------------------------------------------------------
// Top-down view in the odom frame, +y up. Everything is drawn in viewBox pixels through one transform,
// recomputed each redraw so the arena (geofence, keep-out zones), the robot, objects and goal fit.
const SVG_NS = "http://www.w3.org/2000/svg";
const MAP_W = 480, MAP_H = 480, MAP_PAD = 16;   // viewBox size and margin (px)
const OBJECT_FILL = new Set(["red", "orange", "yellow", "green", "blue", "purple", "white", "black", "grey", "gray",
                             "brown", "pink", "cyan", "magenta"]);

function svgEl(tag, attrs) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  return el;
}

function finite(v) { return typeof v === "number" && Number.isFinite(v); }

function mapView(m) {
  // World bounds to fit: arena and zones, the robot with its slowdown zone, objects, goal (not the laser:
  // one far return must not shrink the arena).
  const xs = [], ys = [];
  const add = (x, y) => { if (finite(x) && finite(y)) { xs.push(x); ys.push(y); } };
  const z = m.zones;
  if (z) {
    for (const [x, y] of z.geofence) add(x, y);
    for (const k of z.keep_out) for (const [x, y] of k.polygon) add(x, y);
  }
  if (m.robot) {
    const reach = z ? Math.max(...z.slowdown_zone.map(([x, y]) => Math.hypot(x, y)), z.robot_radius) : 1.0;
    add(m.robot.x - reach, m.robot.y - reach); add(m.robot.x + reach, m.robot.y + reach);
  }
  for (const o of m.objects || []) add(o.x, o.y);
  if (m.goal) add(m.goal.x, m.goal.y);
  if (!xs.length) return null;
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const scale = Math.min((MAP_W - 2 * MAP_PAD) / Math.max(x1 - x0, 0.5), (MAP_H - 2 * MAP_PAD) / Math.max(y1 - y0, 0.5));
  return { scale, cx: (x0 + x1) / 2, cy: (y0 + y1) / 2 };
}

function toScreen(v, x, y) {
  return [MAP_W / 2 + (x - v.cx) * v.scale, MAP_H / 2 - (y - v.cy) * v.scale];
}

function pointsAttr(v, poly) {
  return poly.map(([x, y]) => toScreen(v, x, y).map((a) => a.toFixed(2)).join(",")).join(" ");
}

function clearMap() {
  for (const id of ["map-geofence", "map-keepout", "map-scan", "map-objects", "map-goal"]) $(id).replaceChildren();
  $("map-robot").setAttribute("hidden", "");
  $("map-robot").removeAttribute("transform");
  delete $("map").dataset.view;
  $("map-info").textContent = "No map data yet";
}

function renderMap(m) {
  if (!m) { clearMap(); return; }
  const v = mapView(m);
  if (!v) { clearMap(); return; }
  const svg = $("map");
  svg.dataset.view = `${v.scale} ${v.cx} ${v.cy}`;   // world -> px: ((x-cx)*s + W/2, H/2 - (y-cy)*s)
  const z = m.zones;
  $("map-geofence").replaceChildren(...(z ? [svgEl("polygon", { class: "geofence", points: pointsAttr(v, z.geofence) })] : []));
  $("map-keepout").replaceChildren(...(z ? z.keep_out.map((k) => {
    const g = svgEl("g", { "data-zone": k.name });
    g.append(svgEl("polygon", { class: "keepout", points: pointsAttr(v, k.polygon) }));
    const [lx, ly] = toScreen(v, k.polygon[0][0], k.polygon[0][1]);
    const label = svgEl("text", { x: lx.toFixed(1), y: (ly - 3).toFixed(1) });
    label.textContent = `keep-out ${k.name}`;
    g.append(label);
    return g;
  }) : []));
  $("map-scan").replaceChildren(...(m.scan || []).map(([x, y]) => {
    const [sx, sy] = toScreen(v, x, y);
    return svgEl("circle", { class: "scan", cx: sx.toFixed(1), cy: sy.toFixed(1), r: 1.6 });
  }));
  $("map-objects").replaceChildren(...(m.objects || []).map((o) => {
    const [sx, sy] = toScreen(v, o.x, o.y);
    const g = svgEl("g", { "data-object": o.name });
    const fill = OBJECT_FILL.has(o.colour) ? o.colour : "#999";
    g.append(svgEl("rect", { class: "object" + (o.solid ? "" : " area"), x: (sx - 5).toFixed(1), y: (sy - 5).toFixed(1),
                             width: 10, height: 10, fill, "stroke-width": o.in_view ? 2 : 1 }));
    const label = svgEl("text", { x: (sx + 7).toFixed(1), y: (sy + 4).toFixed(1) });
    label.textContent = o.name;
    g.append(label);
    return g;
  }));
  const goal = [];
  if (m.goal) {
    const [gx, gy] = toScreen(v, m.goal.x, m.goal.y);
    const g = svgEl("g", { "data-goal": m.goal.label, class: "goal" });
    g.append(svgEl("path", { d: `M${gx - 7},${gy - 7}L${gx + 7},${gy + 7}M${gx - 7},${gy + 7}L${gx + 7},${gy - 7}` }));
    if (finite(m.goal.theta)) {
      g.append(svgEl("line", { x1: gx, y1: gy, x2: gx + 18 * Math.cos(m.goal.theta), y2: gy - 18 * Math.sin(m.goal.theta) }));
    }
    const label = svgEl("text", { x: (gx + 9).toFixed(1), y: (gy - 9).toFixed(1), class: "goal-label" });
    label.textContent = m.goal.label;
    g.append(label);
    goal.push(g);
  }
  $("map-goal").replaceChildren(...goal);
  const robot = $("map-robot");
  if (m.robot) {
    // The robot group is drawn in the robot frame in px (x forward, y left -> screen y up), placed by its transform.
    const [rx, ry] = toScreen(v, m.robot.x, m.robot.y);
    const deg = -m.robot.theta * 180 / Math.PI;
    robot.setAttribute("transform", `translate(${rx.toFixed(2)} ${ry.toFixed(2)}) rotate(${deg.toFixed(2)})`);
    const local = (poly) => poly.map(([x, y]) => `${(x * v.scale).toFixed(2)},${(-y * v.scale).toFixed(2)}`).join(" ");
    const radius = z ? z.robot_radius : 0.25;
    $("map-footprint").setAttribute("r", (radius * v.scale).toFixed(2));
    $("map-heading").setAttribute("x2", (radius * v.scale).toFixed(2));
    $("map-slowdown").setAttribute("points", z ? local(z.slowdown_zone) : "");
    $("map-stop").setAttribute("points", z ? local(z.stop_zone) : "");
    $("map-creep").setAttribute("points", z && z.creep_zone.length ? local(z.creep_zone) : "");
    robot.removeAttribute("hidden");
  } else {
    robot.setAttribute("hidden", "");
  }
  const parts = [m.robot ? `robot x ${fmt(m.robot.x)} m, y ${fmt(m.robot.y)} m` : "robot pose unknown",
                 `${(m.scan || []).length} laser points`, `${(m.objects || []).length} objects`,
                 m.goal ? m.goal.label : "no goal",
                 z ? `${z.keep_out.length} keep-out zones` : (m.zones_error || "no zones from the supervisor yet")];
  $("map-info").textContent = parts.join(" · ");
}
