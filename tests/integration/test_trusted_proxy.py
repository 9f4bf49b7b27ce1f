"""Trusted-proxy mode (seed two's x-user-email): x-user-superuser only with the proxy's shared secret, user ids
compared case-insensitively, UTF-8 header values read as UTF-8."""

from __future__ import annotations

from pathlib import Path

from tests.integration.apiclient import running_api

SECRET = "proxy-secret-" + "s" * 20


async def test_superuser_header_needs_the_proxys_secret(database_url: str, tmp_path: Path) -> None:
    async with running_api(database_url, tmp_path, bgtasks_trusted_proxy=True) as api:
        # No secret configured: plain users work, a superuser claim is refused (anyone could send it).
        r = await api.client.get("/api/me", headers={"x-user-email": "p@x"})
        assert r.json() == {"success": True, "userId": "p@x", "isSuperuser": False}
        r = await api.client.get("/api/me", headers={"x-user-email": "p@x", "x-user-superuser": "true"})
        assert r.status_code == 401 and "BGTASKS_TRUSTED_PROXY_SECRET" in r.json()["error"]
    async with running_api(database_url, tmp_path, bgtasks_trusted_proxy=True,
                           bgtasks_trusted_proxy_secret=SECRET) as api:
        from_proxy = {"x-user-email": "root@x", "x-bgtasks-proxy-secret": SECRET}
        r = await api.client.get("/api/me", headers={**from_proxy, "x-user-superuser": "true"})
        assert r.json() == {"success": True, "userId": "root@x", "isSuperuser": True}
        r = await api.client.get("/api/me", headers=from_proxy)
        assert r.json()["isSuperuser"] is False
        for secret in ("wrong-" + "s" * 20, ""):
            r = await api.client.get("/api/me", headers={"x-user-email": "root@x", "x-user-superuser": "1",
                                                          "x-bgtasks-proxy-secret": secret})
            assert r.status_code == 401 and "x-bgtasks-proxy-secret" in r.json()["error"]
        # With a secret set, no proxy header counts without it.
        r = await api.client.get("/api/me", headers={"x-user-email": "p@x"})
        assert r.status_code == 401


async def test_user_ids_compare_case_insensitively_and_read_as_utf8(database_url: str, tmp_path: Path) -> None:
    async with running_api(database_url, tmp_path, bgtasks_trusted_proxy=True) as api:
        made = await api.client.post("/api/tasks", headers={"x-user-email": "Alice@Example.COM"},
                                     json={"taskType": "noop"})
        assert made.status_code == 201, made.text
        task = made.json()["task"]
        assert task["userId"] == "alice@example.com"
        r = await api.client.get(f"/api/tasks/{task['id']}", headers={"x-user-email": "alice@example.com"})
        assert r.status_code == 200
        r = await api.client.get("/api/getBackgroundTasks", params={"userId": "ALICE@example.com"},
                                 headers={"x-user-email": "alice@EXAMPLE.com"})
        assert [t["id"] for t in r.json()["tasks"]] == [task["id"]]
        r = await api.client.get(f"/api/tasks/{task['id']}", headers={"x-user-email": "bob@example.com"})
        assert r.status_code == 404
        # UTF-8 on the wire (as a proxy sends it): José, not JosÃ©.
        me = await api.client.get("/api/me", headers={b"x-user-email": "José@example.com".encode()})
        assert me.json()["userId"] == "josé@example.com"
        bad = await api.client.get("/api/me", headers={b"x-user-email": b"j\xe9@example.com"})  # latin-1 bytes
        assert bad.status_code == 401 and "UTF-8" in bad.json()["error"]


async def test_a_proxy_header_sent_twice_is_refused(database_url: str, tmp_path: Path) -> None:
    """A proxy that appends its x-user-email after the client's must not leave the client's in charge."""
    async with running_api(database_url, tmp_path, bgtasks_trusted_proxy=True,
                           bgtasks_trusted_proxy_secret=SECRET) as api:
        for name, values in [("x-user-email", ["root@x", "bob@x"]), ("x-user-superuser", ["true", "false"]),
                             ("x-bgtasks-proxy-secret", [SECRET, "wrong"])]:
            headers = [("x-user-email", "bob@x"), ("x-bgtasks-proxy-secret", SECRET)]
            headers = [(k, v) for k, v in headers if k != name] + [(name, v) for v in values]
            r = await api.client.get("/api/me", headers=headers)
            assert r.status_code == 401 and f"{name}: sent more than once" in r.json()["error"], r.text
        ok = await api.client.get("/api/me", headers={"x-user-email": "bob@x", "x-bgtasks-proxy-secret": SECRET})
        assert ok.json() == {"success": True, "userId": "bob@x", "isSuperuser": False}
