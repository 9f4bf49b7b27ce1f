// The create form: common fields, project fields for seed one's project types, and payload fields built
// from each task type's JSON schema (the registry's, embedded in the page by the server).

import { h } from "./format.js";

const GROUPS = [
  ["Project (AI)", (t) => t.needsProject],
  ["Quiz (AI)", (t) => !t.needsProject && !t.diagnostic],
  ["Diagnostics", (t) => t.diagnostic],
];

export function loadTaskTypes() {
  const node = document.getElementById("task-types");
  try {
    const types = JSON.parse(node ? node.textContent : "[]");
    if (Array.isArray(types) && types.length) return types;
  } catch {
    /* fall through */
  }
  return [];
}

export function typeOptions(types, select, { empty } = {}) {
  select.replaceChildren();
  if (empty) select.append(h("option", { value: "" }, empty));
  for (const [label, test] of GROUPS) {
    const members = types.filter(test);
    if (!members.length) continue;
    select.append(h("optgroup", { label }, members.map((t) => h("option", { value: t.name }, t.name))));
  }
}

function fieldId(name) {
  return `f-${name.replace(/[^a-zA-Z0-9_-]/g, "-")}`;
}

function payloadField(key, schema, required) {
  const id = fieldId(`payload-${key}`);
  const name = `payload.${key}`;
  const hint = [];
  let input;
  if (Array.isArray(schema.enum)) {
    input = h("select", { id, name, required },
      required ? null : h("option", { value: "" }, "(default)"),
      schema.enum.map((v) => h("option", { value: String(v) }, String(v))));
  } else if (schema.type === "integer" || schema.type === "number") {
    input = h("input", { id, name, type: "number", inputmode: "decimal", required,
      min: schema.minimum, max: schema.maximum, step: schema.type === "integer" ? 1 : "any" });
    if (schema.minimum !== undefined && schema.maximum !== undefined) hint.push(`${schema.minimum}–${schema.maximum}`);
  } else if (schema.type === "boolean") {
    input = h("input", { id, name, type: "checkbox" });
  } else if (schema.type === "array") {
    input = h("input", { id, name, type: "text", required, inputmode: "numeric", autocomplete: "off",
      dataset: { kind: `array:${schema.items?.type ?? "string"}` } });
    hint.push("comma-separated");
  } else if ((schema.maxLength ?? 0) > 300) {
    input = h("textarea", { id, name, rows: 3, maxlength: schema.maxLength, required });
  } else {
    input = h("input", { id, name, type: "text", required, maxlength: schema.maxLength, autocomplete: "off" });
  }
  input.dataset.type = schema.type ?? "string";
  const label = h("label", { for: id }, key, required ? h("span", { class: "req", "aria-hidden": "true" }, " *") : null,
    hint.length ? h("span", { class: "hint" }, ` (${hint.join(", ")})`) : null);
  return h("div", { class: schema.type === "boolean" ? "field check" : "field" }, label, input);
}

/** Fill `container` with the fields of task type `type`. */
export function renderTypeFields(container, type) {
  container.replaceChildren();
  if (!type) return;
  if (type.needsProject) {
    container.append(h("fieldset", { class: "group" }, h("legend", {}, "Project"),
      ["projectId", "projectName", "projectPath"].map((k) => h("div", { class: "field" },
        h("label", { for: fieldId(k) }, k, h("span", { class: "req", "aria-hidden": "true" }, " *")),
        h("input", { id: fieldId(k), name: k, type: "text", required: true, autocomplete: "off" })))));
  }
  const props = type.payloadSchema?.properties ?? {};
  const required = new Set(type.payloadSchema?.required ?? []);
  const keys = Object.keys(props);
  if (keys.length) {
    container.append(h("fieldset", { class: "group" }, h("legend", {}, "Payload"),
      keys.map((k) => payloadField(k, props[k], required.has(k)))));
  }
}

/** The POST /api/tasks body from the form, or throws Error(field: message). */
export function collect(form, type) {
  const data = new FormData(form);
  const body = { taskType: type.name };
  const str = (k) => String(data.get(k) ?? "").trim();
  for (const k of ["label", "description"]) if (str(k)) body[k] = str(k);
  if (str("priority")) body.priority = Number(str("priority"));
  if (str("maxRetries")) body.maxRetries = Number(str("maxRetries"));
  if (type.needsProject) for (const k of ["projectId", "projectName", "projectPath"]) body[k] = str(k);
  else if (str("projectId")) body.projectId = str("projectId");
  const payload = {};
  for (const input of form.querySelectorAll("[name^='payload.']")) {
    const key = input.name.slice("payload.".length);
    if (input.type === "checkbox") {
      if (input.checked) payload[key] = true;
      continue;
    }
    const raw = input.value.trim();
    if (raw === "") continue;
    const kind = input.dataset.kind || input.dataset.type;
    if (kind === "integer" || kind === "number") payload[key] = Number(raw);
    else if (kind.startsWith("array:")) {
      const parts = raw.split(/[\s,;]+/).filter(Boolean);
      const numeric = kind === "array:integer" || kind === "array:number";
      if (numeric && parts.some((p) => !/^-?\d+(\.\d+)?$/.test(p))) {
        throw Object.assign(new Error(`${key}: numbers separated by commas`), { field: input.id });
      }
      payload[key] = numeric ? parts.map(Number) : parts;
    } else payload[key] = raw;
  }
  body.payload = payload;
  return body;
}
