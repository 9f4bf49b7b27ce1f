// The overview at the top of the dashboard: tasks finished per minute (completed and failed, a uPlot chart),
// p50/p95 run and queue wait by type (GET /api/analytics), tokens and cost by user and type (GET /api/usage),
// all over one window that ends at the next whole minute. The section carries the window it shows
// (data-since, data-until), so what it says can be checked against the API for the same period.

import { get, query } from "./api.js";
import { h } from "./format.js";

const $ = (id) => document.getElementById(id);
const MINUTE = 60_000;
const REFRESH_MS = 60_000; // one refresh a minute: the window moves by a bucket
const WINDOWS = {
  "1h": { label: "Last hour", span: 60 * MINUTE, bucket: "minute" },
  "6h": { label: "Last 6 hours", span: 360 * MINUTE, bucket: "minute" },
  "24h": { label: "Last 24 hours", span: 1440 * MINUTE, bucket: "minute" },
  "7d": { label: "Last 7 days", span: 7 * 1440 * MINUTE, bucket: "hour" },
};

let chart = null;
let loading = null;

/** Seconds as the overview prints them: two decimals under 10 s, one under 100 s, whole seconds above. */
export function seconds(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  return `${value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0)} s`;
}

function usd(value) {
  return typeof value === "number" ? `$${value.toFixed(4)}` : "—";
}

function cell(value, text = String(value)) {
  return h("td", { class: "num", dataset: { value: value ?? "" } }, text);
}

/** The window ending at the next whole minute (so every bucket is whole). */
export function windowEnding(now, key) {
  const w = WINDOWS[key] ?? WINDOWS["1h"];
  const until = Math.ceil((now + 1) / MINUTE) * MINUTE;
  return { ...w, since: new Date(until - w.span).toISOString(), until: new Date(until).toISOString() };
}

/** Epoch seconds as a UTC time: "16:45" by the minute, "12-02 16:00" by the hour. */
function utc(epochS, bucket) {
  const iso = new Date(epochS * 1000).toISOString();
  return bucket === "hour" ? iso.slice(5, 16).replace("T", " ") : iso.slice(11, 16);
}

function colors() {
  const css = getComputedStyle(document.documentElement);
  const read = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  return { text: read("--muted", "#59636e"), line: read("--line", "#d5dbe1"),
           completed: read("--completed", "#1a6b33"), error: read("--error", "#b0201d") };
}

function drawChart(points, bucket) {
  const box = $("ov-chart");
  const data = [
    points.map((p) => Date.parse(p.start) / 1000),
    points.map((p) => p.completed),
    points.map((p) => p.failed),
  ];
  if (chart) chart.destroy();
  const c = colors();
  const axis = { stroke: c.text, grid: { stroke: c.line, width: 1 }, ticks: { stroke: c.line, width: 1 } };
  const uPlot = window.uPlot;
  const step = bucket === "hour" ? 3600 : 60;
  // Completed and failed side by side in each bucket; the axis in UTC, as the window above it.
  const bars = (align) => uPlot.paths.bars({ size: [0.45, 10], align });
  chart = new uPlot({
    width: Math.max(240, box.clientWidth), height: 180,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    // Half a bucket of room each side, so the first and last buckets' bars are drawn whole.
    scales: { x: { time: true, range: (u, lo, hi) => [lo - step, hi + step] },
              y: { range: (u, lo, hi) => [0, Math.max(1, hi)] } },
    axes: [{ ...axis, values: (u, splits) => splits.map((v) => utc(v, bucket)) }, { ...axis, size: 40 }],
    series: [
      { label: "Time (UTC)", value: (u, v) => (v === null ? "—" : utc(v, bucket)) },
      { label: "Completed", stroke: c.completed, fill: c.completed, width: 0, paths: bars(-1), points: { show: false } },
      { label: "Failed", stroke: c.error, fill: c.error, width: 0, paths: bars(1), points: { show: false } },
    ],
    legend: { live: false },
  }, data, box);
}

function renderThroughput(series) {
  const points = series?.points ?? [];
  const sum = (k) => points.reduce((n, p) => n + p[k], 0);
  const per = series?.bucket ?? "minute";
  $("ov-completed").textContent = String(sum("completed"));
  $("ov-failed").textContent = String(sum("failed"));
  $("ov-cancelled").textContent = String(sum("cancelled"));
  $("ov-bucket").textContent = per;
  const peak = points.reduce((m, p) => Math.max(m, p.completed + p.failed), 0);
  $("ov-peak").textContent = String(peak);
  drawChart(points, per);
}

function renderLatency(groups) {
  const body = $("ov-latency-rows");
  body.replaceChildren(...groups.map((g) => h("tr", { dataset: { key: g.key } },
    h("th", { scope: "row" }, g.key),
    cell(g.total), cell(g.completed), cell(g.failed),
    cell(g.durationSeconds.p50, seconds(g.durationSeconds.p50)),
    cell(g.durationSeconds.p95, seconds(g.durationSeconds.p95)),
    cell(g.queueWaitSeconds.p50, seconds(g.queueWaitSeconds.p50)),
    cell(g.queueWaitSeconds.p95, seconds(g.queueWaitSeconds.p95)))));
  $("ov-latency-empty").hidden = groups.length > 0;
}

function renderUsage(usage) {
  const body = $("ov-usage-rows");
  body.replaceChildren(...usage.map((u) => h("tr", { dataset: { key: `${u.userId} ${u.taskType}` } },
    h("td", { class: "ov-user" }, u.userId), h("td", {}, u.taskType),
    cell(u.tasks), cell(u.calls), cell(u.totalTokens), cell(u.costUsd, usd(u.costUsd)))));
  const cost = usage.reduce((n, u) => n + (u.costUsd ?? 0), 0);
  const tokens = usage.reduce((n, u) => n + u.totalTokens, 0);
  $("ov-tokens").textContent = String(tokens);
  $("ov-cost").textContent = usd(cost);
  $("ov-usage-empty").hidden = usage.length > 0;
}

export async function refresh(now = Date.now()) {
  const w = windowEnding(now, $("ov-window").value);
  loading?.abort?.();
  const mine = (loading = new AbortController());
  const section = $("overview");
  section.setAttribute("aria-busy", "true");
  try {
    const [analytics, usage] = await Promise.all([
      get(`/api/analytics${query({ since: w.since, until: w.until, groupBy: "type", bucket: w.bucket })}`),
      get(`/api/usage${query({ since: w.since, until: w.until })}`),
    ]);
    if (mine.signal.aborted) return;
    // One synchronous step: the window attributes and every figure change together.
    renderThroughput(analytics.series);
    renderLatency(analytics.groups);
    renderUsage(usage.usage);
    section.dataset.since = w.since;
    section.dataset.until = w.until;
    $("ov-error").hidden = true;
    $("ov-range").textContent = `${w.since.slice(0, 16).replace("T", " ")} – ${w.until.slice(11, 16)} UTC`;
  } catch (err) {
    if (mine.signal.aborted) return;
    $("ov-error").textContent = `Overview unavailable: ${err.message}`;
    $("ov-error").hidden = false;
  } finally {
    if (!mine.signal.aborted) section.removeAttribute("aria-busy");
  }
}

function start() {
  if (!$("overview") || !window.uPlot) return;
  $("ov-window").replaceChildren(...Object.entries(WINDOWS).map(([k, w]) => h("option", { value: k }, w.label)));
  $("ov-window").addEventListener("change", () => refresh());
  $("ov-refresh").addEventListener("click", () => refresh());
  // A new or forgotten API key (app.js stores it first: its listener was added before this one).
  $("key-form")?.addEventListener("submit", () => refresh());
  $("key-forget")?.addEventListener("click", () => refresh());
  let width = $("ov-chart").clientWidth;
  new ResizeObserver(() => {
    const now = $("ov-chart").clientWidth;
    if (chart && now !== width) chart.setSize({ width: Math.max(240, now), height: 180 });
    width = now;
  }).observe($("ov-chart"));
  setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
  refresh();
}

start();
