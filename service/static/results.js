// Task results for people: documents as rendered Markdown, quiz results as question lists, lists of items
// as lists, anything else as labelled values; the raw JSON is always one click away.

import { h } from "./format.js";
import { renderMarkdown } from "./markdown.js";

const QUESTION_KEYS = ["question", "questionText", "prompt"];
const TITLE_KEYS = ["title", "name", "label", "goal", "task", "path", "file"];
const MAX_DEPTH = 4;
const LEAD_KEYS = ["summary", "overview"];
const TAIL_KEYS = ["source"];

function parse(value) {
  if (typeof value !== "string") return value;
  const s = value.trim();
  if (s.startsWith("{") || s.startsWith("[")) {
    try {
      return JSON.parse(s);
    } catch {
      return value;
    }
  }
  return value;
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const humanKey = (k) =>
  String(k).replace(/_/g, " ").replace(/([a-z])([A-Z])/g, "$1 $2").replace(/^./, (c) => c.toUpperCase());

function looksLikeMarkdown(s) {
  return s.length > 120 || s.includes("\n") || /^#{1,6}\s/.test(s) || /\*\*|`|\[.+\]\(.+\)/.test(s);
}

function text(value) {
  if (typeof value === "string") return looksLikeMarkdown(value) ? renderMarkdown(value) : h("span", {}, value);
  if (typeof value === "boolean") return h("span", {}, value ? "yes" : "no");
  if (value === null || value === undefined) return h("span", { class: "muted" }, "—");
  return h("span", {}, String(value));
}

function questionList(items) {
  return h("ol", { class: "questions" }, items.map((q) => {
    const body = QUESTION_KEYS.map((k) => q[k]).find((v) => typeof v === "string") ?? "";
    const options = q.options ?? q.choices ?? q.answers ?? q.alternatives;
    const correct = q.correctAnswer ?? q.correct ?? q.answer ?? q.correctOption ?? q.correctIndex;
    const li = h("li", { class: "question" },
      h("p", { class: "q-text" }, q.emoji ? h("span", { class: "emoji", "aria-hidden": "true" }, `${q.emoji} `) : null,
        body));
    if (Array.isArray(options) && options.length) {
      li.append(h("ul", { class: "options" }, options.map((opt, i) => {
        const label = isObject(opt) ? opt.text ?? opt.label ?? JSON.stringify(opt) : String(opt);
        const isCorrect = correct === i || correct === label || (isObject(opt) && opt.correct === true);
        return h("li", { class: isCorrect ? "correct" : "" }, label,
          isCorrect ? h("span", { class: "correct-mark" }, " ✓ correct") : null);
      })));
    } else if (correct !== undefined && !Array.isArray(options)) {
      li.append(h("p", { class: "answer" }, "Answer: ", String(correct)));
    }
    const extra = Object.entries(q).filter(([k]) =>
      ![...QUESTION_KEYS, "options", "choices", "answers", "alternatives", "correctAnswer", "correct", "answer",
        "correctOption", "correctIndex", "emoji"].includes(k));
    if (extra.length) li.append(fields(extra, MAX_DEPTH - 1));
    return li;
  }));
}

function fileList(items) {
  return h("div", { class: "files" }, items.map((f) => {
    const name = f.path ?? f.name ?? f.file ?? "file";
    const content = f.content ?? f.markdown ?? f.text ?? "";
    const isMd = /\.(md|markdown|mdx|txt)$/i.test(name) || !/\.[a-z0-9]+$/i.test(name);
    return h("section", { class: "file" }, h("h4", {}, name),
      isMd ? renderMarkdown(content) : h("pre", {}, h("code", {}, content)));
  }));
}

function itemList(items, depth) {
  return h("ol", { class: "items" }, items.map((item) => {
    if (!isObject(item)) return h("li", {}, text(item));
    const titleKey = TITLE_KEYS.find((k) => typeof item[k] === "string");
    const rest = Object.entries(item).filter(([k]) => k !== titleKey);
    return h("li", {}, titleKey ? h("strong", { class: "item-title" }, item[titleKey]) : null,
      rest.length ? fields(rest, depth - 1) : null);
  }));
}

function value(v, depth) {
  v = parse(v);
  if (Array.isArray(v)) {
    if (!v.length) return h("span", { class: "muted" }, "none");
    if (v.every(isObject)) {
      if (v.some((o) => QUESTION_KEYS.some((k) => typeof o[k] === "string"))) return questionList(v);
      if (v.every((o) => typeof o.content === "string" && (o.path || o.name || o.file))) return fileList(v);
      if (depth > 0) return itemList(v, depth);
    }
    if (v.every((x) => !isObject(x) && !Array.isArray(x))) {
      return h("ul", { class: "plain" }, v.map((x) => h("li", {}, text(x))));
    }
    return h("pre", {}, JSON.stringify(v, null, 2));
  }
  if (isObject(v)) return depth > 0 ? fields(Object.entries(v), depth - 1) : h("pre", {}, JSON.stringify(v, null, 2));
  return text(v);
}

function fields(entries, depth) {
  return h("dl", { class: "fields" }, entries.flatMap(([k, v]) => [h("dt", {}, humanKey(k)), h("dd", {}, value(v, depth))]));
}

/** The result of a task as a node, or null when it has none. */
export function renderResult(task) {
  const raw = task.resultData ?? task.result;
  if (raw === null || raw === undefined || raw === "") return null;
  const data = parse(raw);
  const wrap = h("div", { class: "result" });
  if (typeof data === "string") wrap.append(renderMarkdown(data));
  else if (isObject(data)) {
    // The summary first and the source metadata (what the model was shown) last: jsonb keeps keys by length,
    // so "source" would otherwise come before "summary".
    const rank = ([k]) => (LEAD_KEYS.includes(k) ? 0 : TAIL_KEYS.includes(k) ? 2 : 1);
    const entries = Object.entries(data).sort((a, b) => rank(a) - rank(b));
    wrap.append(fields(entries, MAX_DEPTH));
  } else wrap.append(value(data, MAX_DEPTH));
  wrap.append(h("details", { class: "raw" }, h("summary", {}, "Raw JSON"),
    h("pre", {}, JSON.stringify(data, null, 2))));
  return wrap;
}
