// A small, safe Markdown renderer for task results. It builds DOM nodes and only ever puts the source into
// text nodes, so no HTML in a result can run or render as markup (<script>, <img onerror>, ... stay text);
// links keep only http(s), mailto and relative targets. Covers what models write: headings, paragraphs,
// lists, code blocks, block quotes, rules, simple tables, and **bold**, *italic*, `code`, [links](url).

const SAFE_URL = /^(https?:|mailto:|\/|\.{0,2}\/|#)/i;

function el(tag, children = [], attrs = {}) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

// Inline: the earliest match of any rule wins; text between matches stays text.
const INLINE = [
  ["code", /`([^`\n]+)`/],
  ["link", /\[([^\]\n]+)\]\(([^)\s]+)(?:\s+"[^"]*")?\)/],
  ["strong", /\*\*([^*\n]+?)\*\*|__([^_\n]+?)__/],
  ["em", /\*([^*\n]+?)\*|(?<![\w])_([^_\n]+?)_(?![\w])/],
  ["autolink", /\bhttps?:\/\/[^\s<>()]+[^\s<>().,;:!?'"]/],
];

export function renderInline(text) {
  const out = [];
  let rest = text;
  while (rest) {
    let best = null;
    for (const [kind, re] of INLINE) {
      const m = re.exec(rest);
      if (m && (best === null || m.index < best.m.index)) best = { kind, m };
    }
    if (!best) {
      out.push(document.createTextNode(rest));
      break;
    }
    const { kind, m } = best;
    if (m.index > 0) out.push(document.createTextNode(rest.slice(0, m.index)));
    if (kind === "code") out.push(el("code", [m[1]]));
    else if (kind === "strong") out.push(el("strong", renderInline(m[1] ?? m[2])));
    else if (kind === "em") out.push(el("em", renderInline(m[1] ?? m[2])));
    else if (kind === "link" || kind === "autolink") {
      const label = kind === "link" ? m[1] : m[0];
      const href = kind === "link" ? m[2] : m[0];
      if (SAFE_URL.test(href) && !/^\s*javascript:/i.test(href)) {
        out.push(el("a", renderInline(label), { href, rel: "noopener noreferrer nofollow", target: "_blank" }));
      } else {
        out.push(document.createTextNode(label));
      }
    }
    rest = rest.slice(m.index + m[0].length);
  }
  return out;
}

const isBlank = (l) => /^\s*$/.test(l);
const HEADING = /^(#{1,6})\s+(.*?)\s*#*\s*$/;
const FENCE = /^\s*(```|~~~)\s*([\w+-]*)\s*$/;
const RULE = /^\s*([-*_])(\s*\1){2,}\s*$/;
const QUOTE = /^\s*>\s?(.*)$/;
const BULLET = /^(\s*)[-*+]\s+(.*)$/;
const ORDERED = /^(\s*)(\d{1,9})[.)]\s+(.*)$/;
const TABLE_SEP = /^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$/;

function cells(line) {
  return line.trim().replace(/^\||\|$/g, "").split("|").map((c) => c.trim());
}

function list(lines, i, ordered) {
  const re = ordered ? ORDERED : BULLET;
  const first = re.exec(lines[i]);
  const indent = first[1].length;
  const node = el(ordered ? "ol" : "ul");
  if (ordered && first[2] !== "1") node.setAttribute("start", String(Number(first[2])));
  while (i < lines.length) {
    const m = re.exec(lines[i]);
    if (!m || m[1].length < indent) break;
    if (m[1].length > indent) {
      // A deeper item: a nested list inside the previous item.
      const nested = list(lines, i, ordered);
      (node.lastElementChild || node).append(nested.node);
      i = nested.i;
      continue;
    }
    const li = el("li", renderInline(ordered ? m[3] : m[2]));
    node.append(li);
    i += 1;
    // Lazy continuation lines and nested lists of the other kind.
    while (i < lines.length && !isBlank(lines[i]) && !re.test(lines[i])) {
      const other = ordered ? BULLET : ORDERED;
      const om = other.exec(lines[i]);
      if (om && om[1].length > indent) {
        const nested = list(lines, i, !ordered);
        li.append(nested.node);
        i = nested.i;
      } else if (/^\s+\S/.test(lines[i])) {
        li.append(document.createTextNode(" "), ...renderInline(lines[i].trim()));
        i += 1;
      } else break;
    }
    if (i < lines.length && isBlank(lines[i]) && i + 1 < lines.length && re.test(lines[i + 1])) i += 1;
  }
  return { node, i };
}

function blocks(lines) {
  const frag = document.createDocumentFragment();
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (isBlank(line)) {
      i += 1;
      continue;
    }
    let m;
    if ((m = FENCE.exec(line))) {
      const close = m[1];
      const body = [];
      i += 1;
      while (i < lines.length && !lines[i].trim().startsWith(close)) body.push(lines[i++]);
      i += 1;
      const code = el("code", [body.join("\n")]);
      if (m[2]) code.setAttribute("data-lang", m[2]);
      frag.append(el("pre", [code]));
    } else if ((m = HEADING.exec(line))) {
      frag.append(el(`h${m[1].length}`, renderInline(m[2])));
      i += 1;
    } else if (RULE.test(line)) {
      frag.append(el("hr"));
      i += 1;
    } else if (QUOTE.test(line)) {
      const body = [];
      while (i < lines.length && (m = QUOTE.exec(lines[i]))) {
        body.push(m[1]);
        i += 1;
      }
      frag.append(el("blockquote", [blocks(body)]));
    } else if (BULLET.test(line) || ORDERED.test(line)) {
      const r = list(lines, i, !BULLET.test(line));
      frag.append(r.node);
      i = r.i;
    } else if (line.includes("|") && i + 1 < lines.length && TABLE_SEP.test(lines[i + 1])) {
      const head = el("tr", cells(line).map((c) => el("th", renderInline(c), { scope: "col" })));
      const body = el("tbody");
      i += 2;
      while (i < lines.length && lines[i].includes("|") && !isBlank(lines[i])) {
        body.append(el("tr", cells(lines[i]).map((c) => el("td", renderInline(c)))));
        i += 1;
      }
      frag.append(el("div", [el("table", [el("thead", [head]), body])], { class: "md-table" }));
    } else {
      const para = [];
      while (
        i < lines.length && !isBlank(lines[i]) && !HEADING.test(lines[i]) && !FENCE.test(lines[i]) &&
        !QUOTE.test(lines[i]) && !(para.length && (BULLET.test(lines[i]) || ORDERED.test(lines[i]))) &&
        !RULE.test(lines[i])
      ) {
        para.push(lines[i].trim());
        i += 1;
      }
      if (!para.length) {
        // A line no block rule took (e.g. a lone list marker): show it as text.
        para.push(lines[i].trim());
        i += 1;
      }
      const p = el("p");
      para.forEach((text, n) => {
        if (n) p.append(document.createTextNode(" "));
        p.append(...renderInline(text));
      });
      frag.append(p);
    }
  }
  return frag;
}

/** Markdown text -> a <div class="markdown"> of DOM nodes (never parsed as HTML). */
export function renderMarkdown(text) {
  const root = el("div", [], { class: "markdown" });
  root.append(blocks(String(text ?? "").replace(/\t/g, "    ").split(/\r\n|\r|\n/)));
  return root;
}
