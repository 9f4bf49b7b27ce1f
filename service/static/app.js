// The dashboard: the task table (one page at a time, updated live from /api/events), counts by status,
// filters and search, details, actions, the create form, toasts and, for superusers, the queue controls.
// The server is the source of truth: a page comes from GET /api/tasks, every change after it from the stream.

import { ApiError, apiKey, del, get, patch, post, query, setApiKey } from "./api.js";
import { collect, loadTaskTypes, renderTypeFields, typeOptions } from "./form.js";
import {
  ACTIONS, SEARCH_FIELDS, STATUSES, STATUS_LABEL, TERMINAL, absolute, duration, errorLine, h, normaliseStatus, percent, relative, shortId,
  taskTitle, waitingLabel,
} from "./format.js";
import { LiveStream } from "./live.js";
import { renderResult } from "./results.js";
import { readUrl, taskUrl, writeUrl } from "./urlstate.js";

const $ = (id) => document.getElementById(id);
const KNOWN_LIMIT = 20000; // statuses remembered for tasks off the page (to keep counts exact)

const state = {
  me: { userId: null, isSuperuser: false },
  types: loadTaskTypes(),
  tasks: new Map(), // id -> task JSON, for rows on the page and the open dialog
  known: new Map(), // id -> [status, seq] of every task seen (bounded)
  page: [], // ids shown, in order
  counts: Object.fromEntries(STATUSES.map((s) => [s, 0])),
  filters: { q: "", status: "", type: "", projectId: "", userId: "", sort: "-createdAt" },
  pageSize: 50,
  cursors: [null], // cursor of each page visited; the last is the current page's
  pageBase: 0, // page number of cursors[0] minus 1: a link to page 5 opened afresh keeps only its own cursor
  nextCursor: null,
  selected: new Set(),
  selectAll: false, // "select all N matching": the bulk actions go by the filters, not by ids
  countsCapped: false, // a search's counts stopped at the server's cap: each figure is at least that
  loading: null, // the AbortController of the list request in flight
  bufferedDuringLoad: false,
  live: false,
  streamStart: Date.now(),
  detailId: null,
  output: new Map(), // task id -> { attempt, text }: live output of running tasks (output events)
  queue: null,
};
const rows = new Map(); // id -> <tr>

// ------------------------------------------------------------------ identity and the API key

async function loadMe() {
  try {
    const me = await get("/api/me");
    state.me = { userId: me.userId ?? me.user?.id ?? null, isSuperuser: Boolean(me.isSuperuser ?? me.user?.isSuperuser) };
  } catch (err) {
    if (err.status === 401) throw err;
    // No /api/me on this server: development mode without a key is the local superuser.
    state.me = { userId: apiKey() ? null : "local", isSuperuser: !apiKey() };
  }
  $("whoami").textContent = state.me.userId
    ? `Signed in as ${state.me.userId}${state.me.isSuperuser ? " (superuser)" : ""}` : "";
  for (const node of document.querySelectorAll(".superuser-only")) node.hidden = !state.me.isSuperuser;
  document.body.classList.toggle("is-superuser", state.me.isSuperuser);
}

function showBanner(message) {
  const b = $("banner");
  b.textContent = message ?? "";
  b.hidden = !message;
}

function needKey(message) {
  showBanner(message || "This server needs an API key: enter one under “API key”.");
  $("key-box").open = true;
  $("api-key").focus();
}

// ------------------------------------------------------------------ tasks in memory

function remember(task) {
  state.known.delete(task.id);
  state.known.set(task.id, [task.status, task.seq ?? 0]);
  if (state.known.size > KNOWN_LIMIT) state.known.delete(state.known.keys().next().value);
}

function normalise(task) {
  task.status = normaliseStatus(task.status);
  return task;
}

/** Whether `task` belongs in the table under the current filters (the server decides for whole pages). */
function matches(task) {
  const f = state.filters;
  if (!state.me.isSuperuser && state.me.userId && task.userId !== state.me.userId) return false;
  if (f.status && task.status !== f.status) return false;
  if (f.type && task.taskType !== f.type) return false;
  if (f.projectId && task.projectId !== f.projectId) return false;
  if (f.userId && task.userId !== f.userId) return false;
  if (f.q) {
    const needle = f.q.toLowerCase(); // the server: any searched field ILIKE %q%
    if (!SEARCH_FIELDS.some((k) => typeof task[k] === "string" && task[k].toLowerCase().includes(needle))) return false;
  }
  return true;
}

/** Counts follow the list's scope: the user (and type) filters, not status, project or search. */
function counted(task) {
  const f = state.filters;
  if (!state.me.isSuperuser && state.me.userId && task.userId !== state.me.userId) return false;
  if (f.userId && task.userId !== f.userId) return false;
  if (f.type && task.taskType !== f.type) return false;
  return true;
}

// ------------------------------------------------------------------ loading a page

let countsTimer = null;
function refreshCountsSoon() {
  clearTimeout(countsTimer);
  countsTimer = setTimeout(refreshCounts, 1000);
}

async function refreshCounts() {
  try {
    const f = state.filters;
    const res = await get(`/api/tasks/counts${query({ q: f.q, type: f.type, projectId: f.projectId, userId: f.userId })}`);
    setCounts(res.counts, res.countsCapped);
  } catch {
    /* the next page load corrects them */
  }
}

function listParams(cursor) {
  const f = state.filters;
  return query({ q: f.q, status: f.status, type: f.type, projectId: f.projectId, userId: f.userId,
    sort: f.sort, limit: state.pageSize, cursor });
}

async function loadPage({ keepFocus = false } = {}) {
  if (state.loading) state.loading.abort();
  const controller = new AbortController();
  state.loading = controller;
  state.bufferedDuringLoad = false;
  const cursor = state.cursors[state.cursors.length - 1];
  $("task-table").setAttribute("aria-busy", "true");
  try {
    const res = await get(`/api/tasks${listParams(cursor)}`);
    if (controller.signal.aborted) return;
    showBanner("");
    const tasks = (res.tasks || []).map(normalise);
    // A change streamed while the request was in flight may be newer than the row it returned.
    const keep = new Map(state.tasks);
    state.tasks.clear();
    for (const t of tasks) {
      const newer = keep.get(t.id);
      state.tasks.set(t.id, newer && (newer.seq ?? 0) > (t.seq ?? 0) ? newer : t);
      remember(state.tasks.get(t.id));
    }
    if (state.detailId && keep.has(state.detailId)) state.tasks.set(state.detailId, keep.get(state.detailId));
    state.page = tasks.map((t) => t.id);
    state.nextCursor = res.nextCursor ?? null;
    setCounts(res.counts, res.countsCapped);
    if (state.bufferedDuringLoad) refreshCountsSoon();
    for (const id of [...state.selected]) if (!state.tasks.has(id)) state.selected.delete(id);
    renderRows();
    learnOptions(tasks);
    if (!keepFocus && document.activeElement === document.body) $("tasks-h").focus({ preventScroll: true });
  } catch (err) {
    if (controller.signal.aborted) return;
    if (err.status === 401) needKey();
    else showBanner(`Could not load tasks: ${err.message}`);
  } finally {
    if (state.loading === controller) state.loading = null;
    $("task-table").removeAttribute("aria-busy");
  }
}

function learnOptions(tasks) {
  const add = (listId, values) => {
    const list = $(listId);
    const have = new Set([...list.options].map((o) => o.value));
    for (const v of values) {
      if (v && !have.has(v) && list.options.length < 200) {
        list.append(h("option", { value: v }));
        have.add(v);
      }
    }
  };
  add("projects", tasks.map((t) => t.projectId));
  add("users", tasks.map((t) => t.userId));
}

// ------------------------------------------------------------------ counts

function setCounts(counts, capped = false) {
  if (!counts) return;
  for (const s of STATUSES) state.counts[s] = Number(counts[s] ?? (s === "error" ? counts.failed : 0) ?? 0);
  state.countsCapped = Boolean(capped);
  renderCounts();
}

/** A search or a project filter: the server counts those (task_counts cannot), so live events re-ask it. */
function searching() {
  return Boolean(state.filters.q || state.filters.projectId);
}

/** Tasks under the filters in these statuses (all of them when omitted), the status filter applied. */
function countOf(statuses = STATUSES) {
  const f = state.filters.status;
  return statuses.filter((s) => !f || s === f).reduce((n, s) => n + state.counts[s], 0);
}

/** A count as the page shows it: "1,234", or "50,000+" when the server stopped counting a search. */
function shown(n) {
  return `${n.toLocaleString("en")}${state.countsCapped ? "+" : ""}`;
}

function bump(status, delta) {
  if (status in state.counts) state.counts[status] = Math.max(0, state.counts[status] + delta);
}

function renderCounts() {
  const list = $("counts");
  const total = STATUSES.reduce((n, s) => n + state.counts[s], 0);
  const items = [["", "All", total], ...STATUSES.map((s) => [s, STATUS_LABEL[s], state.counts[s]])];
  if (list.children.length !== items.length) {
    list.replaceChildren(...items.map(([status, label]) => h("li", {},
      h("button", { type: "button", class: `count status-${status || "all"}`, dataset: { status },
        onclick: () => setFilter("status", status) },
      h("span", { class: "count-label" }, label), h("span", { class: "count-n" }, "0")))));
  }
  items.forEach(([status, label, n], i) => {
    const btn = list.children[i].firstElementChild;
    btn.querySelector(".count-n").textContent = shown(n);
    btn.setAttribute("aria-pressed", String(state.filters.status === status));
    btn.setAttribute("aria-label", `${label}: ${shown(n)}${status ? "" : " tasks"}. Show ${label.toLowerCase()}`);
  });
  $("matching").textContent = `${shown(countOf())} matching`;
  $("retry-failed").disabled = state.counts.error === 0;
  $("clear-failed").disabled = state.counts.error + state.counts.cancelled === 0;
  $("clear-completed").disabled = state.counts.completed === 0;
  renderPageInfo();
  renderSelection();
}

// ------------------------------------------------------------------ the table

function actionButtons(task, { inDialog = false } = {}) {
  const title = taskTitle(task);
  const out = [];
  if (ACTIONS.cancel.includes(task.status)) {
    out.push(h("button", { type: "button", class: "act act-cancel", "aria-label": `Cancel ${title}`,
      onclick: () => act(task.id, "cancel") }, "Cancel"));
  }
  if (ACTIONS.retry.includes(task.status)) {
    out.push(h("button", { type: "button", class: "act act-retry", "aria-label": `Retry ${title}`,
      onclick: () => act(task.id, "retry") }, "Retry"));
  }
  if (ACTIONS.delete.includes(task.status)) {
    out.push(h("button", { type: "button", class: "act act-delete danger", "aria-label": `Delete ${title}`,
      onclick: () => act(task.id, "delete") }, "Delete"));
  }
  if (!inDialog) {
    out.unshift(h("button", { type: "button", class: "act act-details", "aria-label": `Details of ${title}`,
      "aria-haspopup": "dialog", onclick: (e) => openDetail(task.id, e.currentTarget) }, "Details"));
  }
  return out;
}

function progressBar(task, label) {
  const pct = percent(task);
  const fill = h("span", { class: "bar-fill" });
  fill.style.width = `${pct}%`;
  return h("div", { class: `bar status-${task.status}`, role: "progressbar", "aria-valuemin": "0",
    "aria-valuemax": "100", "aria-valuenow": String(pct), "aria-label": label }, fill);
}

function buildRow(task) {
  const tr = h("tr", { dataset: { id: task.id } });
  tr.append(
    h("td", { class: "col-select" }, h("input", { type: "checkbox", class: "select-row",
      "aria-label": `Select ${taskTitle(task)}`, onchange: (e) => toggleSelect(task.id, e.target.checked) })),
    h("td", { class: "col-task", "data-label": "Task" }),
    h("td", { class: "col-status", "data-label": "Status" }),
    h("td", { class: "col-progress", "data-label": "Progress" }),
    h("td", { class: "col-duration", "data-label": "Duration" }),
    h("td", { class: "col-user superuser-only", "data-label": "User" }),
    h("td", { class: "col-created", "data-label": "Created" }),
    h("td", { class: "col-actions" }),
  );
  fillRow(tr, task);
  return tr;
}

/** The status as a badge; a pending task says why it waits ("Scheduled · in 1 h 58 m", "Blocked: 1/1 running"),
 * the whole sentence in its title. */
function statusBadge(task) {
  const waiting = waitingLabel(task);
  if (!waiting) return h("span", { class: `badge status-${task.status}` }, STATUS_LABEL[task.status] ?? task.status);
  return h("span", { class: `badge status-pending waiting waiting-${task.waitingFor.reason}`,
    title: task.waitingFor.text ?? "", "data-reason": task.waitingFor.reason }, waiting);
}

function fillRow(tr, task) {
  const [, cTask, cStatus, cProgress, cDuration, cUser, cCreated, cActions] = tr.children;
  tr.className = `row status-${task.status}`;
  tr.querySelector(".select-row").checked = state.selectAll || state.selected.has(task.id);
  const meta = [task.taskType, task.projectName || task.projectId, `#${shortId(task.id)}`].filter(Boolean).join(" · ");
  cTask.replaceChildren(h("span", { class: "task-title" }, taskTitle(task)), h("span", { class: "task-meta" }, meta));
  const retries = task.retryCount > 0 ? h("span", { class: "retries" }, `retry ${task.retryCount}/${task.maxRetries}`) : null;
  cStatus.replaceChildren(statusBadge(task), ...(retries && !task.waitingFor ? [retries] : []));
  const pct = percent(task);
  const bar = cProgress.querySelector(".bar");
  // A finished task's last progress note ("Saving") is history: a failure shows its error, the rest nothing.
  const note = task.status === "error" ? task.errorMessage : task.status === "cancelled" ? task.cancelReason
    : !TERMINAL.has(task.status) && task.description && task.label ? task.description : "";
  if (bar) {
    // Update in place, so the width transition runs and assistive technology hears one value change.
    bar.className = `bar status-${task.status}`;
    bar.setAttribute("aria-valuenow", String(pct));
    bar.firstElementChild.style.width = `${pct}%`;
    cProgress.querySelector(".pct").textContent = `${pct}%`;
    cProgress.querySelector(".note").textContent = note || "";
  } else {
    cProgress.replaceChildren(h("div", { class: "bar-line" }, progressBar(task, `Progress of ${taskTitle(task)}`),
      h("span", { class: "pct" }, `${pct}%`)), h("span", { class: "note" }, note || ""));
  }
  cDuration.textContent = duration(task);
  cUser.textContent = task.userId ?? "";
  cUser.hidden = !state.me.isSuperuser;
  cCreated.replaceChildren(h("time", { datetime: task.createdAt ?? "", title: absolute(task.createdAt) }, relative(task.createdAt)));
  const key = `${task.status}`;
  if (cActions.dataset.key !== key) {
    cActions.dataset.key = key;
    const hadFocus = cActions.contains(document.activeElement) ? document.activeElement.className : null;
    cActions.replaceChildren(h("div", { class: "actions" }, actionButtons(task)));
    if (hadFocus) (cActions.querySelector(`.${hadFocus.split(" ")[1]}`) || cActions.querySelector(".act-details"))?.focus();
  }
}

function renderRows() {
  const body = $("rows");
  const wanted = new Set(state.page);
  for (const [id, tr] of rows) {
    if (!wanted.has(id)) {
      tr.remove();
      rows.delete(id);
    }
  }
  let prev = null;
  for (const id of state.page) {
    const task = state.tasks.get(id);
    let tr = rows.get(id);
    if (!tr) {
      tr = buildRow(task);
      rows.set(id, tr);
    } else fillRow(tr, task);
    const expected = prev ? prev.nextSibling : body.firstChild;
    if (expected !== tr) body.insertBefore(tr, expected);
    prev = tr;
  }
  $("empty").hidden = state.page.length > 0;
  const n = state.pageBase + state.cursors.length;
  $("prev-page").disabled = n <= 1;
  $("next-page").disabled = !state.nextCursor;
  renderPageInfo();
  renderSelection();
}

function renderPageInfo() {
  const n = state.pageBase + state.cursors.length;
  const first = (n - 1) * state.pageSize + 1;
  $("page-info").textContent = state.page.length
    ? `Page ${n}: ${first.toLocaleString("en")}–${(first + state.page.length - 1).toLocaleString("en")} of ${shown(countOf())} matching`
    : `Page ${n}: no tasks`;
}

function updateRow(task) {
  const tr = rows.get(task.id);
  if (tr) fillRow(tr, task);
}

// ------------------------------------------------------------------ selection and actions

function toggleSelect(id, on) {
  if (state.selectAll) {
    // Unticking one row of "all matching" leaves the rest of this page selected, by id.
    state.selectAll = false;
    state.selected = new Set(state.page);
  }
  if (on) state.selected.add(id);
  else state.selected.delete(id);
  renderSelection();
}

function renderSelection() {
  const matching = countOf();
  const n = state.selectAll ? matching : state.selected.size;
  $("selected-count").textContent = state.selectAll ? `All ${shown(n)} matching selected` : `${n} selected`;
  for (const id of ["bulk-cancel", "bulk-retry", "bulk-delete"]) $(id).disabled = n === 0;
  const all = $("select-page");
  const onPage = state.selectAll ? state.page.length : state.page.filter((id) => state.selected.has(id)).length;
  all.checked = onPage > 0 && onPage === state.page.length;
  all.indeterminate = onPage > 0 && onPage < state.page.length;
  // The whole page ticked and more match than it shows: offer them all (the bulk call goes by the filters).
  const offer = $("select-matching");
  offer.hidden = !state.selectAll && !(all.checked && matching > state.page.length);
  offer.textContent = state.selectAll ? "Clear selection" : `Select all ${shown(matching)} matching`;
}

function toggleSelectMatching() {
  state.selectAll = !state.selectAll;
  state.selected.clear();
  if (!state.selectAll) $("select-page").checked = false;
  for (const [id, tr] of rows) tr.querySelector(".select-row").checked = state.selectAll || state.selected.has(id);
  renderSelection();
}

const PAST = { cancel: "cancelled", retry: "queued again", delete: "deleted" };

async function act(id, action) {
  const task = state.tasks.get(id);
  const title = task ? taskTitle(task) : id;
  if (action === "delete" && !confirm(`Delete “${title}”? This cannot be undone.`)) return;
  try {
    if (action === "delete") await del(`/api/tasks/${encodeURIComponent(id)}`);
    else {
      const res = await post(`/api/tasks/${encodeURIComponent(id)}/${action}`);
      if (res && res.task) applyTask(normalise(res.task), { quiet: true });
    }
    toast(`${title}: ${PAST[action]}`, "info");
  } catch (err) {
    toast(`Could not ${action} ${title}: ${err.message}`, "error");
  }
}

async function bulk(action) {
  if (state.selectAll) return bulkMatching(action);
  const ids = [...state.selected];
  if (!ids.length) return;
  if (action === "delete" && !confirm(`Delete ${ids.length} selected task(s)? This cannot be undone.`)) return;
  try {
    const res = await post(`/api/tasks/bulk/${action}`, { ids });
    const skipped = (res.skipped || []).length;
    toast(`${res.count} task(s) ${PAST[action]}${skipped ? `; ${skipped} skipped (not in a state that allows it)` : ""}`, "info");
    if (action === "delete") for (const id of res.ids || []) state.selected.delete(id);
    renderSelection();
  } catch (err) {
    toast(`Could not ${action} the selected tasks: ${err.message}`, "error");
  }
}

// ------------------------------------------------------------------ bulk by filter (the totals' actions)

const VERB = { cancel: "Cancel", retry: "Retry", delete: "Delete" };

/** The bulk endpoint's filter for the current view; `status` replaces the status filter when given. */
function viewFilter(status) {
  const f = state.filters;
  const out = {};
  for (const k of ["q", "type", "projectId", "userId"]) if (f[k]) out[k] = f[k];
  if (status ?? f.status) out.status = status ?? f.status;
  return out;
}

/** Where a filter reaches, for a confirmation: "of every user", "matching the filters". */
function scopeWords() {
  const f = state.filters;
  const words = [];
  if (state.me.isSuperuser && !f.userId) words.push("of every user");
  if (f.q || f.type || f.projectId || f.userId) words.push("matching the filters");
  return words.length ? ` ${words.join(", ")}` : "";
}

/** One bulk action over everything `filter` matches: the API changes up to 10,000 rows a call and says
 * `more`, so this calls again until it is done. Returns how many changed. */
async function bulkByFilter(action, filter) {
  let total = 0;
  for (let round = 0; round < 1000; round += 1) {
    const res = await post(`/api/tasks/bulk/${action}`, { filter });
    total += res.count;
    if (!res.more || res.count === 0) break;
  }
  refreshCountsSoon();
  reloadSoon();
  return total;
}

/** Confirm naming the number, then run the bulk action by filter; `done` words the toast. */
async function confirmedBulk(action, filter, n, question, done) {
  if (n === 0 || !confirm(question)) return;
  try {
    const total = await bulkByFilter(action, filter);
    toast(`${done}: ${total.toLocaleString("en")} task${total === 1 ? "" : "s"}`, "info");
  } catch (err) {
    toast(`Could not ${action} the tasks: ${err.message}`, "error");
  }
}

async function bulkMatching(action) {
  const n = countOf(ACTIONS[action]);
  const which = action === "delete" ? "" : action === "cancel" ? " pending or running" : " failed or cancelled";
  state.selectAll = false;
  renderSelection();
  if (n === 0) {
    toast(`None of the matching tasks can be ${action === "retry" ? "retried" : "cancelled"}`, "info");
    return;
  }
  await confirmedBulk(action, viewFilter(), n,
    `${VERB[action]} all ${shown(n)}${which} matching task${n === 1 ? "" : "s"}${scopeWords()}?` +
    (action === "delete" ? " This cannot be undone." : ""), `${VERB[action]} all matching`);
}

function retryAllFailed() {
  const n = state.counts.error;
  return confirmedBulk("retry", viewFilter("error"), n,
    `Retry all ${shown(n)} failed task${n === 1 ? "" : "s"}${scopeWords()}?`, "Queued again");
}

function clearFailed() {
  const n = state.counts.error + state.counts.cancelled;
  return confirmedBulk("delete", viewFilter("error,cancelled"), n,
    `Delete all ${shown(n)} failed and cancelled task${n === 1 ? "" : "s"}${scopeWords()}? This cannot be undone.`,
    "Cleared failed and cancelled");
}

function clearCompleted() {
  const n = state.counts.completed;
  return confirmedBulk("delete", viewFilter("completed"), n,
    `Delete all ${shown(n)} completed task${n === 1 ? "" : "s"}${scopeWords()}? This cannot be undone.`,
    "Cleared completed");
}

// ------------------------------------------------------------------ live events

function applyTask(task, { quiet = false } = {}) {
  const before = state.known.get(task.id);
  if (before && before[1] > (task.seq ?? 0)) return; // older than what we have
  const prevStatus = before ? before[0] : null;
  remember(task);
  if (state.loading) state.bufferedDuringLoad = true;

  // Counts: exact when we know the previous status; a task we never saw is new if it was created after we
  // connected, otherwise ask the server once things settle.
  if (searching()) refreshCountsSoon(); // the server knows what a search matches
  else if (counted(task)) {
    if (prevStatus !== null) {
      if (prevStatus !== task.status) {
        bump(prevStatus, -1);
        bump(task.status, +1);
      }
    } else if ((Date.parse(task.createdAt) || 0) >= state.streamStart - 2000) bump(task.status, +1);
    else refreshCountsSoon();
    renderCounts();
  }

  // Live events carry no waitingFor: a task still pending keeps the reason its page or detail last read.
  const known = state.tasks.get(task.id);
  if (!("waitingFor" in task) && known && known.status === "pending" && task.status === "pending") {
    task.waitingFor = known.waitingFor;
  }
  const onPage = state.tasks.has(task.id) && state.page.includes(task.id);
  if (onPage) {
    if (matches(task)) {
      state.tasks.set(task.id, task);
      updateRow(task);
    } else {
      state.page = state.page.filter((id) => id !== task.id);
      if (state.detailId !== task.id) state.tasks.delete(task.id);
      renderRows();
    }
  } else if (prevStatus === null && state.cursors.length === 1 && matches(task) &&
    (state.filters.sort === "-createdAt" || state.filters.sort === "-updatedAt")) {
    state.tasks.set(task.id, task);
    state.page = [task.id, ...state.page];
    if (state.page.length > state.pageSize) {
      for (const id of state.page.slice(state.pageSize)) if (id !== state.detailId) state.tasks.delete(id);
      state.page = state.page.slice(0, state.pageSize);
      reloadSoon(); // the next page's cursor moved
    }
    learnOptions([task]);
    renderRows();
  } else if (state.filters.sort === "-updatedAt" && state.cursors.length === 1 && matches(task)) {
    reloadSoon();
  }
  if (task.status !== "processing") state.output.delete(task.id); // finished: the result is the record
  if (state.detailId === task.id) {
    state.tasks.set(task.id, task);
    renderDetail(task, prevStatus !== task.status);
  }

  if (!quiet && prevStatus !== task.status && (task.status === "completed" || task.status === "error")) {
    const fresh = prevStatus !== null ? !TERMINAL.has(prevStatus)
      : Date.now() - (Date.parse(task.completedAt || task.updatedAt) || 0) < 60000;
    if (fresh) notifyFinished(task);
  }
}

function applyDeleted(id) {
  const before = state.known.get(id);
  if (searching()) refreshCountsSoon();
  else if (before) {
    const task = state.tasks.get(id);
    if (!task || counted(task)) bump(before[0], -1);
    renderCounts();
    state.known.delete(id);
  } else refreshCountsSoon();
  state.selected.delete(id);
  if (state.page.includes(id)) {
    state.page = state.page.filter((x) => x !== id);
    state.tasks.delete(id);
    renderRows();
  }
  if (state.detailId === id) {
    $("detail-body").prepend(h("p", { class: "form-error" }, "This task was deleted."));
  }
}

let reloadTimer = null;
function reloadSoon() {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(() => loadPage({ keepFocus: true }), 1500);
}

// Live output: the model's text of a running task, growing in its open detail.
function applyOutput(data) {
  let out = state.output.get(data.id);
  if (!out || out.attempt !== data.attempt) out = { attempt: data.attempt, text: "" }; // a retry starts over
  out.text += data.text;
  state.output.set(data.id, out);
  if (state.detailId !== data.id) return;
  const body = $("detail-body");
  const pre = body.querySelector(".detail-output pre");
  if (pre) {
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = out.text;
    if (atEnd) pre.scrollTop = pre.scrollHeight; // follow the text unless the reader scrolled up
  } else {
    const live = body.querySelector(".detail-live");
    if (live) live.after(detailOutput(out));
  }
}

function detailOutput(out) {
  return h("section", { class: "detail-output" }, h("h3", {}, "Output so far"),
    h("pre", { class: "wrap", "aria-live": "off" }, out.text));
}

function onEvent(name, data) {
  if (name === "output" && data) applyOutput(data);
  else if (name === "task" && data) applyTask(normalise(data));
  else if (name === "deleted" && data) applyDeleted(data.id);
  else if (name === "queue" && data) renderQueue(data.queueSettings ?? data);
  else if (name === "ready") {
    if (!state.live) {
      state.live = true;
      loadPage({ keepFocus: true });
      if (taskFromUrl) openDetail(taskFromUrl, null);
      taskFromUrl = null;
    }
  }
}

function onState(s, detail) {
  const conn = $("conn");
  conn.dataset.state = s;
  conn.textContent = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…",
    unauthorized: "Not authorised" }[s] ?? s;
  if (s === "unauthorized") needKey(detail === 403 ? "This API key may not watch these tasks." : undefined);
}

// ------------------------------------------------------------------ toasts

function toast(message, kind = "info", { taskId } = {}) {
  const region = kind === "error" ? $("toasts-alert") : $("toasts-polite");
  const node = h("div", { class: `toast toast-${kind}` }, h("p", {}, message));
  const actions = h("div", { class: "toast-actions" });
  if (taskId) {
    // A link (the task's permalink, to copy or open in a new tab) that opens the detail here on a plain click.
    actions.append(h("a", { href: taskUrl(taskId), class: "toast-link", onclick: (e) => {
      if (e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
      e.preventDefault();
      openDetail(taskId, null);
      node.remove();
    } }, "Details"));
  }
  actions.append(h("button", { type: "button", "aria-label": "Dismiss notification", onclick: () => node.remove() }, "×"));
  node.append(actions);
  region.append(node);
  while (region.children.length > 4) region.firstElementChild.remove();
  let timer = setTimeout(() => node.remove(), kind === "error" ? 12000 : 6000);
  const hold = () => clearTimeout(timer);
  const resume = () => {
    clearTimeout(timer);
    timer = setTimeout(() => node.remove(), 4000);
  };
  node.addEventListener("mouseenter", hold);
  node.addEventListener("focusin", hold);
  node.addEventListener("mouseleave", resume);
  node.addEventListener("focusout", resume);
}

function notifyFinished(task) {
  const title = taskTitle(task);
  if (task.status === "completed") toast(`Completed: ${title}`, "success", { taskId: task.id });
  else toast(`Failed: ${title}${task.errorMessage ? ` — ${task.errorMessage}` : ""}`, "error", { taskId: task.id });
}

// ------------------------------------------------------------------ the details dialog

let detailOpener = null;

async function openDetail(id, opener) {
  detailOpener = opener;
  state.detailId = id;
  syncUrl();
  const dialog = $("detail");
  let task = state.tasks.get(id);
  $("detail-body").replaceChildren(h("p", { class: "muted" }, "Loading…"));
  if (!dialog.open) dialog.showModal();
  try {
    const res = await get(`/api/tasks/${encodeURIComponent(id)}`);
    if (state.detailId !== id) return;
    task = normalise(res.task);
    state.tasks.set(id, task);
    renderDetail(task, true, res.attempts, res);
  } catch (err) {
    if (task) renderDetail(task, true);
    $("detail-body").prepend(h("p", { class: "form-error" }, `Could not load the task: ${err.message}`));
  }
}

function dlRow(label, value) {
  return [h("dt", {}, label), h("dd", {}, value ?? "—")];
}

/** Linked tasks (dependsOn, dependents) as buttons that open their detail. */
function taskLinks(list) {
  return h("span", { class: "task-links" }, ...list.flatMap((t, i) => [
    i ? ", " : "",
    h("button", { type: "button", class: "link", "data-task-link": t.id, onclick: () => openDetail(t.id, detailOpener) },
      `${t.label || t.taskType} #${shortId(t.id)}`),
    ` (${STATUS_LABEL[normaliseStatus(t.status)] ?? t.status})`,
  ]));
}

let detailExtras = null; // the last detail read: its attempts and links, kept through live re-renders

function renderDetail(task, full, attempts, links) {
  if (links) detailExtras = { id: task.id, attempts, links };
  else if (detailExtras?.id === task.id) {
    links = detailExtras.links;
    attempts = attempts ?? detailExtras.attempts;
  }
  const body = $("detail-body");
  $("detail-h").textContent = taskTitle(task);
  const live = body.querySelector(".detail-live");
  if (!full && live) {
    // Progress ticks: update the parts that change, keep the rest (and any scroll position) as it is.
    live.replaceWith(detailLive(task));
    return;
  }
  if (!full && !live) return;
  const tokens = task.promptTokens || task.completionTokens
    ? `${task.promptTokens ?? 0} prompt + ${task.completionTokens ?? 0} completion` : null;
  const output = task.status === "processing" ? state.output.get(task.id) : null;
  const sections = [
    detailLive(task),
    ...(output ? [detailOutput(output)] : []),
    h("div", { class: "actions detail-actions" }, actionButtons(task, { inDialog: true })),
    h("dl", { class: "fields meta" },
      dlRow("Id", [h("code", {}, task.id), " ", h("a", { href: taskUrl(task.id), class: "permalink" }, "Link")]), dlRow("Type", task.taskType), dlRow("User", task.userId),
      task.projectId ? dlRow("Project", `${task.projectName ?? ""} (${task.projectId})${task.projectPath ? ` ${task.projectPath}` : ""}`) : [],
      dlRow("Priority", String(task.priority ?? 0)),
      dlRow("Attempts", `${(task.retryCount ?? 0) + (task.status === "pending" && !task.startedAt ? 0 : 1)} (retries ${task.retryCount ?? 0} of ${task.maxRetries ?? 0})`),
      task.workerId ? dlRow("Worker", task.workerId) : [],
      dlRow("Created", absolute(task.createdAt)), dlRow("Started", absolute(task.startedAt)),
      dlRow("Finished", absolute(task.completedAt)), tokens ? dlRow("Tokens", tokens) : [],
      // What its model calls cost (model_prices), over every attempt, as of the detail's last read.
      typeof links?.costUsd === "number" && tokens ? dlRow("Cost", `$${links.costUsd.toFixed(4)}`) : [],
      task.runAt ? dlRow("Runs at", absolute(task.runAt)) : [],
      task.waitingFor ? dlRow("Waiting for", h("span", { class: "waiting-text" }, task.waitingFor.text)) : [],
      links?.upstream?.length ? dlRow("Depends on", taskLinks(links.upstream)) : [],
      links?.downstream?.length ? dlRow("Dependents", taskLinks(links.downstream)) : []),
  ];
  if (task.errorMessage) {
    sections.push(h("section", { class: "error-box" }, h("h3", {}, "Error"), h("pre", { class: "wrap" }, task.errorMessage)));
  }
  if (task.cancelReason) sections.push(h("p", {}, h("strong", {}, "Cancelled: "), task.cancelReason));
  const list = attempts ?? task.attempts;
  if (Array.isArray(list) && list.length) {
    sections.push(h("section", { class: "attempts" }, h("h3", {}, "Attempts"),
      h("div", { class: "table-scroll" }, h("table", {},
        h("thead", {}, h("tr", {}, ["Attempt", "Outcome", "Error", "When", "Worker"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, list.map((a) => h("tr", {},
          h("td", {}, String(a.attempt ?? "")), h("td", {}, a.outcome ?? ""),
          h("td", { class: "attempt-error" }, errorLine(a.errorType, a.errorMessage),
            a.traceback ? h("details", { class: "traceback" }, h("summary", {}, "Traceback"),
              h("pre", {}, a.traceback)) : null),
          h("td", {}, absolute(a.failedAt ?? a.createdAt)), h("td", {}, a.workerId ?? ""))))))));
  }
  const result = renderResult(task);
  if (result) sections.push(h("section", { class: "result-box" }, h("h3", {}, "Result"), result));
  if (task.payload && Object.keys(task.payload).length) {
    sections.push(h("details", { class: "raw" }, h("summary", {}, "Payload"), h("pre", {}, JSON.stringify(task.payload, null, 2))));
  }
  body.replaceChildren(...sections);
}

function detailLive(task) {
  const pct = percent(task);
  return h("div", { class: "detail-live" },
    h("p", {}, statusBadge(task), " ", h("span", { class: "duration" }, duration(task))),
    h("div", { class: "bar-line" }, progressBar(task, "Progress"), h("span", { class: "pct" }, `${pct}%`)),
    task.description && !TERMINAL.has(task.status) ? h("p", { class: "note" }, task.description) : null);
}

function closeDetail() {
  state.detailId = null;
  syncUrl();
  if (detailOpener && document.contains(detailOpener)) detailOpener.focus();
  detailOpener = null;
}

// ------------------------------------------------------------------ the queue (superusers)

function renderQueue(q) {
  if (!q) return;
  state.queue = { ...(state.queue || {}), ...q };
  const s = state.queue;
  $("queue-state").textContent = s.isActive ? "Running" : "Stopped";
  $("queue-state").className = s.isActive ? "on" : "off";
  $("queue-start").disabled = Boolean(s.isActive);
  $("queue-stop").disabled = !s.isActive;
  renderQueuePoll();
  // A stopped queue is said across the page, to every user: nothing they create will start.
  $("queue-banner").hidden = Boolean(s.isActive);
  $("queue-banner-start").hidden = Boolean(s.isActive) || !state.me.isSuperuser;
  document.body.classList.toggle("queue-stopped", !s.isActive);
  const max = $("queue-max");
  if (document.activeElement !== max) max.value = s.maxConcurrentTasks ?? "";
}

async function loadQueue() {
  try {
    const res = await get("/api/queue");
    renderQueue(res.queueSettings);
  } catch (err) {
    toast(`Could not read the queue settings: ${err.message}`, "error");
  }
}

/** "last claim 5 s ago", ticking with the clock (the queue's events come only when its settings change). */
function renderQueuePoll(now = Date.now()) {
  const at = state.queue?.lastPollAt;
  const text = at ? ` · last claim ${relative(at, now)}` : "";
  if ($("queue-poll").textContent !== text) $("queue-poll").textContent = text;
}

function stopQueue() {
  if (!confirm("Stop the queue? No new task starts on any worker until it is started again; running tasks finish.")) return;
  changeQueue({ isActive: false }, "Queue stopped");
}

async function changeQueue(body, message) {
  try {
    const res = await patch("/api/queue", body);
    renderQueue(res.queueSettings);
    toast(message, "info");
  } catch (err) {
    toast(`Could not change the queue: ${err.message}`, "error");
  }
}

// ------------------------------------------------------------------ the create form

function selectedType() {
  return state.types.find((t) => t.name === $("f-taskType").value);
}

function onTypeChange() {
  const type = selectedType();
  renderTypeFields($("type-fields"), type);
  $("type-desc").textContent = type ? type.description : "";
  $("f-maxRetries").placeholder = type ? String(type.maxRetries) : "";
  $("create-error").hidden = true;
}

async function onCreate(e) {
  e.preventDefault();
  const form = e.currentTarget;
  const err = $("create-error");
  err.hidden = true;
  for (const bad of form.querySelectorAll("[aria-invalid]")) bad.removeAttribute("aria-invalid");
  const type = selectedType();
  if (!type) return;
  const missing = [...form.querySelectorAll("[required]")].find((i) => !i.value.trim());
  if (missing) return formError(`${form.querySelector(`label[for="${missing.id}"]`)?.firstChild?.textContent ?? missing.name}: required`, missing);
  let body;
  try {
    body = collect(form, type);
  } catch (ex) {
    return formError(ex.message, ex.field ? $(ex.field) : null);
  }
  const submit = form.querySelector("button[type=submit]");
  submit.disabled = true;
  try {
    const res = await post("/api/tasks", body);
    const task = normalise(res.task);
    applyTask(task, { quiet: true });
    toast(`Created: ${taskTitle(task)}`, "success", { taskId: task.id });
  } catch (ex) {
    const field = ex.body && ex.body.field;
    const input = field ? form.querySelector(`[name="${CSS.escape(field)}"], [name="payload.${CSS.escape(field.replace(/^payload\./, ""))}"]`) : null;
    formError(ex.message, input);
  } finally {
    submit.disabled = false;
  }
}

function formError(message, input) {
  const err = $("create-error");
  err.textContent = message;
  err.hidden = false;
  if (input) {
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", "create-error");
    input.focus();
  }
}

// ------------------------------------------------------------------ filters and paging

function setFilter(name, value) {
  state.filters[name] = value;
  const input = { status: "filter-status", type: "filter-type", projectId: "filter-project", userId: "filter-user", q: "q", sort: "sort" }[name];
  if (input && $(input).value !== value) $(input).value = value;
  state.cursors = [null];
  state.pageBase = 0;
  state.selected.clear();
  state.selectAll = false;
  syncUrl();
  renderCounts();
  loadPage({ keepFocus: true });
}

/** The address bar follows the view (urlstate.js): filters, sort, rows per page, page and the open task. */
function syncUrl() {
  writeUrl({ filters: state.filters, pageSize: state.pageSize, cursors: state.cursors, pageBase: state.pageBase,
    task: state.detailId });
}

/** The view the address bar asks for, in the state and the filter inputs (before the first page loads). */
function applyUrl() {
  const view = readUrl();
  Object.assign(state.filters, view.filters);
  state.pageSize = view.pageSize;
  state.cursors = view.cursors;
  state.pageBase = view.pageBase;
  const inputs = { status: "filter-status", type: "filter-type", projectId: "filter-project", userId: "filter-user",
    q: "q", sort: "sort" };
  for (const [name, id] of Object.entries(inputs)) $(id).value = state.filters[name];
  $("page-size").value = String(state.pageSize);
  return view;
}

function setupFilters() {
  const status = $("filter-status");
  status.append(h("option", { value: "" }, "Any status"), ...STATUSES.map((s) => h("option", { value: s }, STATUS_LABEL[s])));
  typeOptions(state.types, $("filter-type"), { empty: "Any type" });
  let timer = null;
  $("q").addEventListener("input", (e) => {
    clearTimeout(timer);
    timer = setTimeout(() => setFilter("q", e.target.value.trim()), 250);
  });
  status.addEventListener("change", (e) => setFilter("status", e.target.value));
  $("filter-type").addEventListener("change", (e) => setFilter("type", e.target.value));
  $("sort").addEventListener("change", (e) => setFilter("sort", e.target.value));
  for (const [id, name] of [["filter-project", "projectId"], ["filter-user", "userId"]]) {
    $(id).addEventListener("change", (e) => setFilter(name, e.target.value.trim()));
  }
  $("filters").addEventListener("submit", (e) => e.preventDefault());
  $("filters").addEventListener("reset", () => {
    setTimeout(() => {
      Object.assign(state.filters, { q: "", status: "", type: "", projectId: "", userId: "" });
      setFilter("sort", $("sort").value || "-createdAt");
    });
  });
  $("prev-page").addEventListener("click", () => {
    if (state.cursors.length > 1) state.cursors.pop();
    // cursors[0] is the first page's (none): a link to page 5 that kept no earlier cursors goes back to page 1.
    if (state.cursors.length === 1) state.pageBase = 0;
    syncUrl();
    loadPage();
  });
  $("next-page").addEventListener("click", () => {
    if (!state.nextCursor) return;
    state.cursors.push(state.nextCursor);
    syncUrl();
    loadPage();
  });
  $("page-size").addEventListener("change", (e) => {
    state.pageSize = Number(e.target.value);
    state.cursors = [null];
    state.pageBase = 0;
    syncUrl();
    loadPage({ keepFocus: true });
  });
  $("select-page").addEventListener("change", (e) => {
    if (state.selectAll) {
      state.selectAll = false;
      state.selected.clear();
    }
    for (const id of state.page) {
      if (e.target.checked) state.selected.add(id);
      else state.selected.delete(id);
    }
    for (const [id, tr] of rows) tr.querySelector(".select-row").checked = state.selected.has(id);
    renderSelection();
  });
}

// ------------------------------------------------------------------ start

let stream = null;

async function start() {
  showBanner("");
  state.live = false;
  state.streamStart = Date.now();
  try {
    await loadMe();
  } catch (err) {
    if (err.status === 401) {
      needKey(apiKey() ? "That API key was not accepted." : undefined);
      return;
    }
    throw err;
  }
  loadQueue();
  if (stream) stream.stop();
  stream = new LiveStream("/api/events", { onEvent, onState });
  stream.start();
}

let taskFromUrl = null; // a permalink's task: its detail opens once the stream is live

function init() {
  setupFilters();
  taskFromUrl = applyUrl().task;
  renderCounts();
  typeOptions(state.types, $("f-taskType"));
  const firstDiagnostic = state.types.find((t) => t.name === "sleep");
  if (firstDiagnostic) $("f-taskType").value = "sleep";
  onTypeChange();
  $("f-taskType").addEventListener("change", onTypeChange);
  $("create-form").addEventListener("submit", onCreate);
  $("bulk-cancel").addEventListener("click", () => bulk("cancel"));
  $("bulk-retry").addEventListener("click", () => bulk("retry"));
  $("bulk-delete").addEventListener("click", () => bulk("delete"));
  $("clear-completed").addEventListener("click", clearCompleted);
  $("retry-failed").addEventListener("click", retryAllFailed);
  $("clear-failed").addEventListener("click", clearFailed);
  $("select-matching").addEventListener("click", toggleSelectMatching);
  $("queue-start").addEventListener("click", () => changeQueue({ isActive: true }, "Queue started"));
  $("queue-stop").addEventListener("click", stopQueue);
  $("queue-banner-start").addEventListener("click", () => changeQueue({ isActive: true }, "Queue started"));
  $("queue-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const raw = $("queue-max").value.trim();
    changeQueue({ maxConcurrentTasks: raw === "" ? null : Number(raw) }, `Max concurrent tasks: ${raw || "no limit"}`);
  });
  $("detail-close").addEventListener("click", () => $("detail").close());
  $("detail").addEventListener("close", closeDetail);
  $("detail").addEventListener("click", (e) => {
    if (e.target === e.currentTarget) e.currentTarget.close(); // a click on the backdrop
  });
  $("api-key").value = apiKey();
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    setApiKey($("api-key").value.trim());
    $("key-box").open = false;
    restart();
  });
  $("key-forget").addEventListener("click", () => {
    setApiKey("");
    $("api-key").value = "";
    restart();
  });
  // Durations and "x s ago" tick locally; nothing is fetched for them.
  setInterval(() => {
    const now = Date.now();
    for (const [id, tr] of rows) {
      const task = state.tasks.get(id);
      if (!task) continue;
      const d = duration(task, now);
      const cell = tr.children[4];
      if (cell.textContent !== d) cell.textContent = d;
      const t = tr.children[6].firstElementChild;
      const r = relative(task.createdAt, now);
      if (t && t.textContent !== r) t.textContent = r;
    }
    renderQueuePoll(now);
    if (state.detailId) {
      const task = state.tasks.get(state.detailId);
      const node = $("detail-body").querySelector(".duration");
      if (task && node) node.textContent = duration(task, now);
    }
  }, 1000);
  start();
}

function restart() {
  state.tasks.clear();
  state.known.clear();
  state.page = [];
  state.selected.clear();
  state.cursors = [null];
  state.pageBase = 0;
  renderRows();
  if (stream) stream.stop();
  stream = null;
  start();
}

window.addEventListener("error", (e) => console.error("dashboard error", e.error || e.message));
export const _state = state; // for the browser tests and the curious
init();
