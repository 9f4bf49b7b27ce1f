"""Safe by default, from outside as an attacker would try it, against real `bgtasks api` processes:
- default settings on 127.0.0.1: no credentials -> 401 on every route of the app (enumerated from the app
  itself) but /healthz, /openapi.json, the dashboard page and its static files;
- dev mode (as `bgtasks up` runs its API) behind a same-host TCP proxy that adds no X-Forwarded-For: a foreign
  Host or any forwarding header -> 401;
- Chromium: a page of another origin (another port) can neither read /api/ws nor cancel a task."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import select
import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Mount, Route, WebSocketRoute

from bgtasks.api.app import create_app
from bgtasks.settings import load_settings
from tests.processes import Processes, free_port

PUBLIC = {"/healthz", "/openapi.json", "/", "/docs"}  # and everything under a Mount (static files)
PATH_VALUES = {"task_id": "task_0123456789abcdef0123456789abcdef", "action": "cancel", "name": "nightly"}


def _api(procs: Processes, **env: str) -> str:
    """A real `bgtasks api` on 127.0.0.1 with only the given settings (no BGTASKS_DEV unless given)."""
    port = free_port()
    proc = procs.start(["api", "--port", str(port)], None, None, **env)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.popen.poll() is not None:
            raise AssertionError("API process exited:\n" + proc.output()[-3000:])
        try:
            return httpx.get(base + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    from tests.processes import wait_until

    wait_until(up, 30, "the API's /healthz")
    return base


def _routes(database_url: str) -> list[tuple[str, str, str]]:
    """(kind, method, concrete path) for every route of the app: http routes per method, WebSockets."""
    app = create_app(load_settings(database_url=database_url))
    out: list[tuple[str, str, str]] = []
    for route in app.routes:
        if isinstance(route, Mount):
            continue
        assert isinstance(route, Route | WebSocketRoute), route
        path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: PATH_VALUES.get(m.group(1), "x1"), route.path)
        if isinstance(route, WebSocketRoute):
            out.append(("websocket", "GET", path))
        elif isinstance(route, Route):
            out.extend(("http", m, path) for m in sorted(route.methods or ()) if m != "HEAD")
    assert len(out) > 30, out
    return out


def _websocket_handshake(base: str, path: str, headers: dict[str, str] | None = None) -> str:
    """The status line a WebSocket upgrade request gets (raw socket: what any client sees)."""
    host, port = base.removeprefix("http://").split(":")
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + extra + "\r\n")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request.encode())
        return s.recv(4096).decode(errors="replace").split("\r\n", 1)[0]


def test_default_bgtasks_api_answers_401_on_every_route_but_the_public_ones(database_url: str,
                                                                             procs: Processes) -> None:
    base = _api(procs)
    refused, public = [], []
    with httpx.Client(base_url=base, timeout=10) as http:
        for kind, method, path in _routes(database_url):
            if kind == "websocket":
                status = _websocket_handshake(base, path)
                assert " 401 " in status + " ", (path, status)
                refused.append(path)
                continue
            r = http.request(method, path, json={} if method not in ("GET", "DELETE") else None)
            if path in PUBLIC:
                assert r.status_code == 200, (method, path, r.status_code, r.text[:200])
                public.append(path)
                continue
            assert r.status_code == 401, (method, path, r.status_code, r.text[:300])
            body = r.json()
            assert body["success"] is False and body["code"] == "unauthorized" and body["error"], body
            assert r.headers["www-authenticate"] == "Bearer"
            refused.append(f"{method} {path}")
        assert http.get("/static/app.js").status_code == 200
    assert "GET /metrics" in refused and "POST /api/tasks/bulk/cancel" in refused and "/api/ws" in refused
    assert {"/healthz", "/openapi.json", "/"} <= set(public)


# ---------------------------------------------------------------- a same-host proxy


@contextlib.contextmanager
def tcp_proxy(target_port: int) -> Iterator[int]:
    """A plain TCP proxy on 127.0.0.1 (like `ssh -L` or socat): bytes both ways, no headers added.

    Threads and blocking sockets, no event loop: on exit the server stops, every connection's thread ends
    (it polls `stopping`) and is joined, and every socket is closed, so nothing outlives the test."""
    stopping = threading.Event()

    class Pipe(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            with contextlib.suppress(OSError), \
                    socket.create_connection(("127.0.0.1", target_port), timeout=10) as upstream:
                peer = {self.request: upstream, upstream: self.request}
                while not stopping.is_set():
                    readable, _, _ = select.select(list(peer), [], [], 0.1)
                    for sock in readable:
                        data = sock.recv(65536)
                        if not data:
                            return  # one side closed: the server closes the client's socket after handle()
                        peer[sock].sendall(data)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Pipe)  # block_on_close: close joins handlers
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


FORWARDING = [{"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"},
              {"X-Forwarded-Host": "evil.example"}, {"X-Forwarded-Proto": "https"}, {"X-Real-IP": "203.0.113.9"}]


def test_dev_mode_behind_a_same_host_proxy_refuses_foreign_hosts_and_forwarding_headers(
        procs: Processes) -> None:
    base = _api(procs, BGTASKS_DEV="true")  # what `bgtasks up` on loopback gives its API process
    api_port = int(base.rsplit(":", 1)[1])
    with tcp_proxy(api_port) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        # Through the proxy every request arrives from loopback; a loopback Host is the local tool itself.
        assert http.get("/api/me").json()["userId"] == "local"
        for host in ("evil.example", "evil.example:80", "127.0.0.1.nip.io", "[::ffff:203.0.113.9]"):
            r = http.get("/api/me", headers={"Host": host})
            assert r.status_code == 401 and "Host" in r.json()["error"], (host, r.status_code, r.text)
        for headers in FORWARDING:
            for method, path in (("GET", "/api/me"), ("GET", "/api/tasks"), ("POST", "/api/tasks/bulk/cancel")):
                r = http.request(method, path, headers=headers, json={"ids": []} if method == "POST" else None)
                # 401 either way: dev mode refuses the header, or (X-Forwarded-For) uvicorn takes the client
                # address from it, which is not loopback, so there is no dev mode at all.
                assert r.status_code == 401 and r.json()["code"] == "unauthorized", (headers, path, r.text)
            assert " 401 " in _websocket_handshake(f"http://127.0.0.1:{port}", "/api/ws", headers) + " "
        assert " 401 " in _websocket_handshake(f"http://127.0.0.1:{port}", "/api/ws", {"Origin": "http://evil.example"})


# ---------------------------------------------------------------- Chromium: another origin's page

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]

ATTACK_PAGE = """<!doctype html><title>elsewhere</title><script>
window.results = {ws: [], fetches: []};
const API = "%(api)s", TASK = "%(task)s";
function note(kind, value) { window.results[kind].push(value); }
const ws = new WebSocket(API.replace("http", "ws") + "/api/ws");
ws.onopen = () => note("ws", "open");
ws.onmessage = (e) => note("ws", "message:" + e.data.slice(0, 80));
ws.onerror = () => note("ws", "error");
const wsDone = new Promise((resolve) => { ws.onclose = (e) => { note("ws", "close:" + e.code); resolve(); }; });
const body = JSON.stringify({ids: [TASK]});
const attempts = [
  ["no-cors text/plain", {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body}],
  ["no-cors typeless blob", {method: "POST", mode: "no-cors", body: new Blob([body])}],
  ["cors json", {method: "POST", headers: {"Content-Type": "application/json"}, body}],
];
window.finished = Promise.all([wsDone, ...attempts.map(([name, init]) =>
  fetch(API + "/api/tasks/bulk/cancel", init)
    .then((r) => note("fetches", name + ":" + r.type + ":" + r.status))
    .catch((e) => note("fetches", name + ":refused:" + e.name)))]).then(() => true);
</script>"""


@contextlib.contextmanager
def static_site(html: str) -> Iterator[str]:
    """Another origin: the same host name on another port, serving one page."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()  # the listening socket (a ResourceWarning, an error under the strict configuration)


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} missing: `apt-get install -y chromium`")
def test_a_page_of_another_origin_can_neither_read_the_websocket_nor_cancel_a_task(procs: Processes,
                                                                                    tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    base = _api(procs, BGTASKS_DEV="true")
    with httpx.Client(base_url=base, timeout=10) as http:
        made = http.post("/api/tasks", json={"taskType": "sleep", "payload": {"seconds": 0}})
        assert made.status_code == 201, made.text
        task_id = made.json()["task"]["id"]
        with static_site(ATTACK_PAGE % {"api": base, "task": task_id}) as elsewhere, \
                sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            try:
                page = browser.new_page()
                page.goto(elsewhere + "/")
                page.wait_for_function("window.finished !== undefined")
                page.evaluate("window.finished")
                results = page.evaluate("window.results")
            finally:
                browser.close()
        print(json.dumps(results))
        assert "open" not in results["ws"] and not any(r.startswith("message") for r in results["ws"]), results
        assert len(results["fetches"]) == 3, results
        assert any(r.startswith("cors json:refused") for r in results["fetches"]), results
        task = http.get(f"/api/tasks/{task_id}").json()["task"]
        assert task["status"] == "pending" and task["cancelReason"] is None, task
        # The same requests from the service's own origin work: the refusal is about the origin.
        own = http.post("/api/tasks/bulk/cancel", json={"ids": [task_id]})
        assert own.status_code == 200 and own.json()["ids"] == [task_id]
