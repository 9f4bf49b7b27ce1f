// The live stream (GET /api/events): `task`, `deleted`, `queue`, `ready`, `dropped` and `output` events, resumed with
// Last-Event-ID after any disconnect (a server restart included), so nothing is missed.
//
// Without an API key it is a plain EventSource, which reconnects by itself and sends Last-Event-ID. An
// EventSource cannot send headers, so with a key the same protocol is read through fetch() with
// `Authorization` and `Last-Event-ID` headers: the key never goes into a URL (and so into access logs).

import { apiKey } from "./api.js";
import { backoffDelay } from "./backoff.js";

const EVENTS = ["task", "deleted", "queue", "ready", "dropped", "output"];
const MAX_BACKOFF_MS = 10000;

export class LiveStream {
  /** onEvent(name, data, id); onState("connecting" | "live" | "reconnecting" | "unauthorized", detail) */
  constructor(path, { onEvent, onState }) {
    this.path = path;
    this.onEvent = onEvent;
    this.onState = onState;
    this.lastEventId = null;
    this.retryMs = 2000;
    this.failures = 0;
    this.es = null;
    this.abort = null;
    this.timer = null;
    this.stopped = true;
  }

  start() {
    this.stopped = false;
    this.onState("connecting");
    if (apiKey()) this.#fetchLoop();
    else this.#openEventSource();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.es) this.es.close();
    this.es = null;
    if (this.abort) this.abort.abort();
    this.abort = null;
  }

  /** Start over from the current state (a new key means a new user: nothing to resume). */
  restart({ resume = true } = {}) {
    this.stop();
    if (!resume) this.lastEventId = null;
    this.start();
  }

  #url() {
    if (this.lastEventId === null) return this.path;
    const sep = this.path.includes("?") ? "&" : "?";
    return `${this.path}${sep}lastEventId=${encodeURIComponent(this.lastEventId)}`;
  }

  #dispatch(name, raw, id) {
    if (id !== undefined && id !== null && id !== "") this.lastEventId = id;
    let data = null;
    try {
      data = raw ? JSON.parse(raw) : null;
    } catch {
      return;
    }
    if (name === "ready") {
      this.failures = 0;
      this.onState("live");
    }
    this.onEvent(name, data, id);
  }

  #scheduleReconnect(reason) {
    if (this.stopped) return;
    this.failures += 1;
    // Doubling from the server's `retry:` (2 s unless it says otherwise), at most 10 s, plus up to 250 ms spread.
    const delay = backoffDelay(this.failures - 1, { base: this.retryMs, cap: Math.min(MAX_BACKOFF_MS, this.retryMs * 8),
      jitter: 250 });
    this.onState("reconnecting", reason);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      if (this.stopped) return;
      if (apiKey()) this.#fetchLoop();
      else this.#openEventSource();
    }, delay);
  }

  #openEventSource() {
    // The first connection names the resume point in the query (an EventSource cannot set the header);
    // the browser's own reconnections send the Last-Event-ID header.
    const es = new EventSource(this.#url());
    this.es = es;
    for (const name of EVENTS) {
      es.addEventListener(name, (e) => this.#dispatch(name, e.data, e.lastEventId));
    }
    es.onerror = () => {
      if (this.stopped || this.es !== es) return;
      if (es.readyState === EventSource.CLOSED) {
        // The browser gave up (an HTTP error such as 401/503): reconnect ourselves, from where we were.
        es.close();
        this.es = null;
        this.#scheduleReconnect("closed");
      } else {
        this.onState("reconnecting");
      }
    };
  }

  async #fetchLoop() {
    const controller = new AbortController();
    this.abort = controller;
    const headers = { Accept: "text/event-stream", Authorization: `Bearer ${apiKey()}` };
    if (this.lastEventId !== null) headers["Last-Event-ID"] = String(this.lastEventId);
    try {
      const res = await fetch(this.path, { headers, signal: controller.signal, cache: "no-store" });
      if (res.status === 401 || res.status === 403) {
        this.onState("unauthorized", res.status);
        return;
      }
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      await this.#readStream(res.body.getReader());
      this.#scheduleReconnect("ended");
    } catch (err) {
      if (controller.signal.aborted || this.stopped) return;
      this.#scheduleReconnect(String(err && err.message ? err.message : err));
    }
  }

  async #readStream(reader) {
    // The text/event-stream format: lines of `field: value`, an empty line ends an event.
    const decoder = new TextDecoder();
    let buffer = "";
    let name = "";
    let data = [];
    let id = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + (buffer.startsWith("\r\n", nl) ? 2 : 1));
        if (line === "") {
          if (data.length) this.#dispatch(name || "message", data.join("\n"), id);
          name = "";
          data = [];
          id = null;
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? "" : line.slice(colon + 1);
        if (val.startsWith(" ")) val = val.slice(1);
        if (field === "event") name = val;
        else if (field === "data") data.push(val);
        else if (field === "id") id = val;
        else if (field === "retry" && /^\d+$/.test(val)) this.retryMs = Number(val);
      }
    }
  }
}
