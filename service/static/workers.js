// The workers view (superusers): every worker process that is live, silent (no heartbeat, never stopped: a
// crash or a cut-off host) or stopped within the hour, with its concurrency, the tasks it runs now, the types
// it serves and its last heartbeat (GET /api/workers). Shown when app.js marks the page as a superuser's.

import { get } from "./api.js";
import { h } from "./format.js";

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 10_000; // heartbeats do not notify: the list is re-read; the ages tick locally
const STATE_LABEL = { live: "Live", silent: "Silent", stopped: "Stopped" };

let timer = null;
let readAt = 0; // performance.now() of the last answer: heartbeat ages are the database's plus time since
let inFlight = false;

/** An age in seconds, as "4 s", "3 min 05 s", "2 h 10 min". */
export function age(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return "—";
  const n = Math.max(0, Math.floor(s));
  if (n < 60) return `${n} s`;
  if (n < 3600) return `${Math.floor(n / 60)} min ${String(n % 60).padStart(2, "0")} s`;
  return `${Math.floor(n / 3600)} h ${String(Math.floor((n % 3600) / 60)).padStart(2, "0")} min`;
}

function tick() {
  const since = (performance.now() - readAt) / 1000;
  for (const cell of document.querySelectorAll("#workers-rows td[data-age]")) {
    const text = `${age(Number(cell.dataset.age) + since)} ago`;
    if (cell.textContent !== text) cell.textContent = text;
  }
}

function render(body) {
  readAt = performance.now();
  const t = body.totals;
  $("workers-summary").textContent =
    `${t.live} live (${t.liveCapacity} slots), ${t.running} running, ${t.silent} silent, ${t.stopped} stopped in the last hour`;
  $("workers-rows").replaceChildren(...body.workers.map((w) => h("tr", { dataset: { id: w.workerId, state: w.state } },
    h("th", { scope: "row" }, h("code", {}, w.workerId)),
    h("td", {}, h("span", { class: `badge worker-${w.state}` }, STATE_LABEL[w.state] ?? w.state)),
    h("td", { class: "num" }, String(w.concurrency)),
    h("td", { class: "num" }, String(w.running)),
    h("td", {}, w.taskTypes.length ? w.taskTypes.join(", ") : "any type"),
    h("td", { title: w.heartbeatAt, dataset: { age: w.heartbeatAgeSeconds } }, `${age(w.heartbeatAgeSeconds)} ago`),
    h("td", { title: w.startedAt }, new Date(w.startedAt).toLocaleString()))));
  $("workers-empty").hidden = body.workers.length > 0;
}

export async function refresh() {
  if ($("workers-panel").hidden || inFlight) return;
  inFlight = true;
  try {
    render(await get("/api/workers"));
    $("workers-error").hidden = true;
  } catch (err) {
    $("workers-error").textContent = `Workers unavailable: ${err.message}`;
    $("workers-error").hidden = false;
  } finally {
    inFlight = false;
  }
}

function follow() {
  const superuser = document.body.classList.contains("is-superuser");
  if (superuser === !$("workers-panel").hidden) return;
  $("workers-panel").hidden = !superuser;
  clearInterval(timer);
  timer = null;
  if (superuser) {
    timer = setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
    refresh();
  }
}

function start() {
  if (!$("workers-panel")) return;
  $("workers-refresh").addEventListener("click", () => refresh());
  new MutationObserver(follow).observe(document.body, { attributes: true, attributeFilter: ["class"] });
  follow();
  setInterval(tick, 1000);
}

start();
