"""The audit log over HTTP: every write leaves an event with actor and request id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.fixtures.api import RegistryServer


def test_writes_are_audited_and_filterable(registry_server: RegistryServer) -> None:
    alice = registry_server.make_user(scope="admin")
    a = registry_server.client(alice.token)
    org = "team-" + alice.name
    r = a.post("/orgs", json={"name": org}, headers={"X-Request-ID": "req-org-create"})
    assert r.status_code == 201
    bob = registry_server.make_user()
    a.post(f"/orgs/{org}/members", json={"user": bob.name, "role": "write"})
    t = a.post("/tokens", json={"name": "ci", "scope": "read"}).json()
    a.delete(f"/tokens/{t['id']}")
    # a failed write leaves nothing behind
    assert a.post("/orgs", json={"name": org}).status_code == 409

    api = registry_server.admin
    events = api.get("/audit", params={"actor": alice.name}).json()["events"]
    assert [e["action"] for e in events] == [
        "token.revoke",
        "token.create",
        "org.member.set",
        "org.create",
    ]
    create = events[-1]
    assert create["target_type"] == "org" and create["target"] == org
    assert create["request_id"] == "req-org-create"
    assert create["details"]["token_id"] == alice.token_id
    assert events[1]["details"]["scope"] == "read"
    assert "token" not in str(events[1]["details"]).replace("token_id", "")

    orgs = api.get("/audit", params={"action": "org.*", "actor": alice.name}).json()["events"]
    assert {e["action"] for e in orgs} == {"org.create", "org.member.set"}
    users = api.get("/audit", params={"action": "user.create"}).json()["events"]
    assert {e["target"] for e in users} >= {alice.name, bob.name}
    assert all(e["actor"] == "admin" for e in users)
    boot = api.get("/audit", params={"action": "user.bootstrap"}).json()["events"]
    assert [(e["actor"], e["target"]) for e in boot] == [(None, "admin")]
    by_target = api.get("/audit", params={"target_type": "org", "target": org}).json()["events"]
    assert len(by_target) == 2
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert api.get("/audit", params={"since": future}).json()["events"] == []
    assert len(api.get("/audit", params={"until": future}).json()["events"]) >= 7


def test_audit_pagination(registry_server: RegistryServer) -> None:
    for _ in range(5):
        registry_server.make_user()
    api = registry_server.admin
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, int | str] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = api.get("/audit", params=params).json()
        seen.extend(e["id"] for e in page["events"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) >= 11
    assert api.get("/audit", params={"limit": 0}).status_code == 400
    assert api.get("/audit", params={"limit": 10_000}).status_code == 400
    assert api.get("/audit", params={"since": "yesterday"}).status_code == 400
