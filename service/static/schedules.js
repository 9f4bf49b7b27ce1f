// The schedules view: every cron schedule the caller may see (GET /api/schedules; superusers: everyone's)
// with its next and last run and last error, a switch to enable or disable it (PATCH) and "Run now"
// (POST /api/schedules/{name}/run: one task at once, outside the cron), whose task is linked.

import { get, patch, post, query } from "./api.js";
import { formatIn, h, time } from "./format.js";
import { taskUrl } from "./urlstate.js";

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 30_000; // the scheduler moves next runs on its own: re-read now and then

function path(s, suffix = "") {
  return `/api/schedules/${encodeURIComponent(s.name)}${suffix}${query({ userId: s.userId })}`;
}

function when(value, now) {
  const t = time(value);
  if (t === null) return "—";
  const text = new Date(t).toISOString().slice(0, 16).replace("T", " ");
  return t >= now ? `${text} UTC (in ${formatIn(t - now)})` : `${text} UTC`;
}

function say(message, link = null) {
  const box = $("schedules-status");
  box.replaceChildren(message, ...(link ? [" ", h("a", { href: link.href }, link.text)] : []));
  box.hidden = false;
}

async function act(work, button) {
  button.disabled = true;
  try {
    await work();
  } catch (err) {
    say(`Failed: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}

function row(s, now) {
  const enabled = h("input", { type: "checkbox", checked: s.enabled, "aria-label": `Enabled: ${s.name}` });
  enabled.addEventListener("change", () => act(async () => {
    const out = await patch(path(s), { enabled: enabled.checked });
    say(`${s.name} ${out.schedule.enabled ? "enabled" : "disabled"}.`);
    await refresh();
  }, enabled));
  const run = h("button", { type: "button", "aria-label": `Run ${s.name} now` }, "Run now");
  run.addEventListener("click", () => act(async () => {
    const out = await post(path(s, "/run"), {});
    say(`${s.name}: task created.`, { href: taskUrl(out.task.id), text: out.task.id });
    await refresh();
  }, run));
  return h("tr", { dataset: { name: s.name, user: s.userId } },
    h("th", { scope: "row" }, s.name, s.label ? h("span", { class: "hint" }, ` · ${s.label}`) : null),
    h("td", { class: "sched-user" }, s.userId),
    h("td", {}, s.taskType),
    h("td", {}, h("code", {}, s.cron), s.timezone !== "UTC" ? ` (${s.timezone})` : ""),
    h("td", {}, h("label", { class: "switch" }, enabled, s.enabled ? "On" : "Off")),
    h("td", { class: "sched-next" }, s.enabled ? (s.nextRunAt ? when(s.nextRunAt, now) : "at the next tick") : "disabled"),
    h("td", { class: "sched-last" }, when(s.lastRunAt, now)),
    h("td", { class: "sched-error" }, s.lastError ?? ""),
    h("td", {}, run));
}

export async function refresh() {
  try {
    const { schedules } = await get("/api/schedules");
    const now = Date.now();
    $("schedules-rows").replaceChildren(...schedules.map((s) => row(s, now)));
    $("schedules-empty").hidden = schedules.length > 0;
    $("schedules-error").hidden = true;
  } catch (err) {
    $("schedules-error").textContent = `Schedules unavailable: ${err.message}`;
    $("schedules-error").hidden = false;
  }
}

function start() {
  if (!$("schedules-panel")) return;
  $("schedules-refresh").addEventListener("click", () => refresh());
  $("key-form")?.addEventListener("submit", () => refresh());
  $("key-forget")?.addEventListener("click", () => refresh());
  setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
  refresh();
}

start();
