// Small formatting helpers shared by the table, the details dialog and the toasts.

// Statuses, the final ones and from which statuses each action is allowed, as the server's state machine has
// them (service/states.py, embedded in the page by service/api/dashboard.py); these defaults stand in on a
// page without them.
function serverJson(id) {
  try {
    return JSON.parse(document.getElementById(id)?.textContent ?? "null");
  } catch {
    return null;
  }
}
const SERVER_STATES = serverJson("task-states");
export const STATUSES = SERVER_STATES?.statuses ?? ["pending", "processing", "completed", "error", "cancelled"];
export const TERMINAL = new Set(SERVER_STATES?.terminal ?? ["completed", "error", "cancelled"]);
export const ACTIONS = SERVER_STATES?.actions ?? {
  cancel: ["pending", "processing"], retry: ["error", "cancelled"], delete: STATUSES,
};
// The fields a search matches, as the server's list filter has them (service/store/tasks.py SEARCHED_FIELDS,
// embedded in the page): a live row is shown under a search only if a reload would list it.
export const SEARCH_FIELDS = serverJson("task-search")?.fields ?? ["label", "description"];

export const STATUS_LABEL = {
  pending: "Pending",
  processing: "Processing",
  completed: "Completed",
  error: "Failed",
  cancelled: "Cancelled",
};

export function normaliseStatus(status) {
  return status === "failed" ? "error" : status;
}

export function time(value) {
  if (value === null || value === undefined || value === "") return null;
  const t = typeof value === "number" ? value : Date.parse(value);
  return Number.isFinite(t) ? t : null;
}

export function percent(task) {
  if (task.status === "completed") return 100;
  const total = Number(task.total) > 0 ? Number(task.total) : 100;
  const p = Math.round((Number(task.progress) || 0) * 100 / total);
  return Math.max(0, Math.min(100, p));
}

export function formatDuration(ms) {
  if (ms === null || !Number.isFinite(ms) || ms < 0) return "—";
  const s = Math.floor(ms / 1000);
  if (s < 60) return ms < 10000 ? `${(ms / 1000).toFixed(1)} s` : `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
  const h = Math.floor(m / 60);
  return `${h} h ${String(m % 60).padStart(2, "0")} min`;
}

/** A wait ahead as task_waiting_reason() words it in SQL: "42 s", "3 m 5 s", "1 h 58 m", "2 d 4 h". */
export function formatIn(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} m`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** A pending task's state in a few words, from its waitingFor (the SQL function task_waiting_reason());
 * null when the task does not say why it waits. The whole sentence is waitingFor.text. */
export function waitingLabel(task, now = Date.now()) {
  const w = task.status === "pending" ? task.waitingFor : null;
  if (!w || typeof w !== "object") return null;
  const until = time(w.runAt);
  const left = until === null ? "" : ` · in ${formatIn(until - now)}`;
  switch (w.reason) {
    case "queue_stopped": return "Queue stopped";
    case "dependencies": return `Waiting on ${w.count} task${w.count === 1 ? "" : "s"}`;
    case "scheduled": return `Scheduled${left}`;
    case "retry_backoff": return `Retry ${w.retry} of ${w.maxRetries}${left}`;
    case "rate_limited": return `Rate limited${left}`;
    case "provider_budget": return `Waiting for the provider's budget${left}`;
    case "no_worker": return `No worker for ${w.taskType}`;
    case "user_limit": return `Blocked: ${w.running}/${w.limit} running`;
    case "type_limit": return `Type limit: ${w.running}/${w.limit} running`;
    case "global_limit": return `Queue full: ${w.running}/${w.limit} running`;
    case "ready": return "Ready";
    default: return w.text ?? null;
  }
}

/** An attempt's error with its type written once ("RuntimeError: boom", never "RuntimeError: RuntimeError: …"). */
export function errorLine(type, message) {
  const text = message ?? "";
  if (!type || text === type || text.startsWith(`${type}: `)) return text || (type ?? "");
  return `${type}: ${text}`;
}

/** How long the task ran (or has run so far); pending tasks: how long they have waited, marked as such. */
export function duration(task, now = Date.now()) {
  const started = time(task.startedAt);
  const ended = time(task.completedAt);
  if (started !== null) {
    const end = ended ?? (task.status === "processing" ? now : time(task.updatedAt) ?? now);
    return formatDuration(end - started);
  }
  if (task.status === "pending") {
    const created = time(task.createdAt);
    return created === null ? "—" : `waiting ${formatDuration(now - created)}`;
  }
  return "—";
}

export function relative(value, now = Date.now()) {
  const t = time(value);
  if (t === null) return "—";
  const s = Math.round((now - t) / 1000);
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(t).toLocaleDateString();
}

export function absolute(value) {
  const t = time(value);
  return t === null ? "—" : new Date(t).toLocaleString();
}

export function taskTitle(task) {
  return task.label || task.description || `${task.taskType} task`;
}

export function shortId(id) {
  const s = String(id ?? "");
  return s.length > 12 ? `${s.slice(0, 8)}…` : s;
}

/** document.createElement with text children and attributes, never innerHTML. */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}
