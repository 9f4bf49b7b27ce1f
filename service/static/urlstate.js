// The dashboard's view in the address bar: filters, sort, rows per page and page (`/?status=error&q=report&page=2`),
// and the task whose detail is open (`/?task=<id>`), so a reload, the Back button or a shared link shows the same.
// A page past the first is a cursor (`cursor=`, opaque, from the API); the cursors of the pages before it live in
// history.state, which a reload keeps; a fresh browser given the link goes back to the first page.

import { STATUSES, normaliseStatus } from "./format.js";

export const FILTER_KEYS = ["q", "status", "type", "projectId", "userId", "sort"];
export const SORTS = ["-createdAt", "createdAt", "-updatedAt", "-priority"];
export const PAGE_SIZES = [25, 50, 100, 200];
export const DEFAULT_SORT = "-createdAt";
export const DEFAULT_PAGE_SIZE = 50;

/** The view the URL asks for; anything it cannot show (an unknown status or sort) is left at its default. */
export function readUrl(search = window.location.search, saved = window.history.state) {
  const p = new URLSearchParams(search);
  const filters = {};
  for (const k of FILTER_KEYS) filters[k] = (p.get(k) ?? "").trim();
  filters.status = normaliseStatus(filters.status.toLowerCase());
  if (!STATUSES.includes(filters.status)) filters.status = "";
  if (!SORTS.includes(filters.sort)) filters.sort = DEFAULT_SORT;
  const size = Number(p.get("limit"));
  const cursor = p.get("cursor") || null;
  const page = Math.max(1, Number.parseInt(p.get("page") ?? "1", 10) || 1);
  // The cursors of the pages before this one, when this history entry remembers them (a reload, Back).
  const kept = Array.isArray(saved?.cursors) && saved.cursors.at(-1) === cursor ? saved.cursors : null;
  const cursors = kept ?? (cursor ? [null, cursor] : [null]);
  return {
    filters,
    pageSize: PAGE_SIZES.includes(size) ? size : DEFAULT_PAGE_SIZE,
    cursors,
    // The number shown for the first cursor kept: a link to page 5 opened afresh says "Page 5".
    pageBase: kept || !cursor ? 0 : page - cursors.length,
    task: p.get("task") || null,
  };
}

/** The query string of a view (defaults left out, so the plain dashboard is `/`). */
export function searchFor({ filters, pageSize, cursors, pageBase = 0, task = null }) {
  const p = new URLSearchParams();
  for (const k of FILTER_KEYS) {
    const value = filters[k];
    if (value && !(k === "sort" && value === DEFAULT_SORT)) p.set(k, value);
  }
  if (pageSize && pageSize !== DEFAULT_PAGE_SIZE) p.set("limit", String(pageSize));
  const cursor = cursors.at(-1);
  if (cursor) {
    p.set("page", String(pageBase + cursors.length));
    p.set("cursor", cursor);
  }
  if (task) p.set("task", task);
  const s = p.toString();
  return s ? `?${s}` : "";
}

/** Put the view in the address bar without reloading (replacing the entry: typing a search adds no history). */
export function writeUrl(view, { push = false } = {}) {
  const search = searchFor(view);
  const state = { cursors: view.cursors };
  if (search === window.location.search && !push) {
    window.history.replaceState(state, "", window.location.href);
    return;
  }
  window.history[push ? "pushState" : "replaceState"](state, "", `${window.location.pathname}${search}`);
}

/** The permalink of a task: the dashboard with its detail open. */
export function taskUrl(id) {
  return `${window.location.origin}/?task=${encodeURIComponent(id)}`;
}
