"""Accounts over HTTP on both backends: users, orgs, members, tokens, whoami."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from loreg.db.models import ApiToken
from tests.fixtures.api import RegistryServer, unique_name


def test_bootstrap_admin_whoami(registry_server: RegistryServer) -> None:
    r = registry_server.admin.get("/whoami")
    assert r.status_code == 200, r.text
    me = r.json()
    assert me["user"] == "admin" and me["is_admin"] is True and me["scope"] == "admin"
    assert me["namespace"] == "admin" and me["orgs"] == []


def test_create_user_and_use_its_token(registry_server: RegistryServer) -> None:
    alice = registry_server.make_user("alice-" + unique_name("x"), scope="write")
    assert alice.token.startswith("lrg_")
    me = registry_server.client(alice.token).get("/whoami").json()
    assert me == {
        "user": alice.name,
        "is_admin": False,
        "namespace": alice.name,
        "scope": "write",
        "token_id": alice.token_id,
        "orgs": [],
    }
    # the name is now taken, by users and orgs alike
    r = registry_server.admin.post("/users", json={"name": alice.name})
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    r = registry_server.admin.post("/orgs", json={"name": alice.name})
    assert r.status_code == 409
    # users only by site admins
    r = registry_server.client(alice.token).post("/users", json={"name": unique_name()})
    assert r.status_code == 403
    r = registry_server.client(None).post("/users", json={"name": unique_name()})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"


def test_create_user_without_token(registry_server: RegistryServer) -> None:
    r = registry_server.admin.post("/users", json={"name": unique_name(), "create_token": False})
    assert r.status_code == 201
    assert r.json()["token"] is None


def test_org_flow(registry_server: RegistryServer) -> None:
    # managing members needs the admin role *and* an admin-scoped token
    alice = registry_server.make_user(scope="admin")
    bob = registry_server.make_user(scope="admin")
    carol = registry_server.make_user()
    a, b, c = (registry_server.client(u.token) for u in (alice, bob, carol))
    org = unique_name("org")

    r = a.post("/orgs", json={"name": org, "description": "the team"})
    assert r.status_code == 201, r.text
    assert r.json()["members"] == [{"user": alice.name, "role": "admin"}]
    assert a.post("/orgs", json={"name": org}).status_code == 409

    alice_write = registry_server.client(registry_server.make_token(alice, scope="write").token)
    r = alice_write.post(f"/orgs/{org}/members", json={"user": bob.name, "role": "write"})
    assert r.status_code == 403
    assert r.json()["error"]["details"]["required_scope"] == "admin"
    r = a.post(f"/orgs/{org}/members", json={"user": bob.name, "role": "write"})
    assert r.status_code == 200 and r.json() == {"user": bob.name, "role": "write"}
    # bob sees the members; carol (outsider) and anonymous see only the public facts
    assert {m["user"] for m in b.get(f"/orgs/{org}").json()["members"]} == {alice.name, bob.name}
    assert c.get(f"/orgs/{org}").json()["members"] is None
    anon = registry_server.client(None).get(f"/orgs/{org}")
    assert anon.status_code == 200 and anon.json()["description"] == "the team"
    assert b.get("/whoami").json()["orgs"] == [{"name": org, "role": "write"}]

    # only org admins manage members
    assert b.post(f"/orgs/{org}/members", json={"user": carol.name}).status_code == 403
    assert c.post(f"/orgs/{org}/members", json={"user": carol.name}).status_code == 403
    r = a.post(f"/orgs/{org}/members", json={"user": "nobody-here"})
    assert r.status_code == 404
    r = a.post(f"/orgs/{org}/members", json={"user": carol.name, "role": "owner"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_input"

    # the last admin cannot leave or be demoted
    assert a.delete(f"/orgs/{org}/members/{alice.name}").status_code == 409
    r = a.post(f"/orgs/{org}/members", json={"user": alice.name, "role": "write"})
    assert r.status_code == 409
    # promote bob, then alice may step down
    assert (
        a.post(f"/orgs/{org}/members", json={"user": bob.name, "role": "admin"}).status_code == 200
    )
    assert (
        a.post(f"/orgs/{org}/members", json={"user": alice.name, "role": "read"}).status_code == 200
    )
    # a member may leave by themselves
    assert a.delete(f"/orgs/{org}/members/{alice.name}").status_code == 204
    assert a.get(f"/orgs/{org}").json()["members"] is None
    assert b.delete(f"/orgs/{org}/members/{alice.name}").status_code == 404
    assert b.get(f"/orgs/{unique_name('org')}").status_code == 404
    # a user's personal namespace is not an organisation
    assert b.get(f"/orgs/{alice.name}").status_code == 404


def test_tokens_scopes(registry_server: RegistryServer) -> None:
    alice = registry_server.make_user(scope="write")
    a = registry_server.client(alice.token)
    r = a.post("/tokens", json={"name": "ci", "scope": "read", "expires_in_days": 30})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["token"].startswith("lrg_") and created["scope"] == "read"
    assert created["prefix"] == created["token"][:12]
    assert created["expires_at"] is not None

    listed = a.get("/tokens").json()["tokens"]
    assert {t["id"] for t in listed} == {alice.token_id, created["id"]}
    assert all("token" not in t for t in listed)

    ro = registry_server.client(created["token"])
    assert ro.get("/whoami").json()["scope"] == "read"
    # a read-scoped token can only read
    assert ro.post("/orgs", json={"name": unique_name("org")}).status_code == 403
    assert ro.post("/tokens", json={"name": "more"}).status_code == 403
    # no escalation: a write token cannot mint an admin token
    r = a.post("/tokens", json={"name": "root", "scope": "admin"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"


def test_revocation_and_self_revocation(registry_server: RegistryServer) -> None:
    alice = registry_server.make_user()
    bob = registry_server.make_user()
    second = registry_server.make_token(alice, scope="read")
    # bob cannot see (or revoke) alice's tokens
    r = registry_server.client(bob.token).delete(f"/tokens/{second.token_id}")
    assert r.status_code == 404
    # a read token may revoke itself (log out)
    ro = registry_server.client(second.token)
    assert ro.delete(f"/tokens/{second.token_id}").status_code == 204
    r = ro.get("/whoami")
    assert r.status_code == 401
    assert r.json()["error"] == {
        "code": "unauthenticated",
        "message": "token has been revoked",
        "details": None,
    }
    # revoking again is idempotent; the token shows as revoked
    a = registry_server.client(alice.token)
    assert a.delete(f"/tokens/{second.token_id}").status_code == 204
    (row,) = [t for t in a.get("/tokens").json()["tokens"] if t["id"] == second.token_id]
    assert row["revoked_at"] is not None
    assert a.delete("/tokens/999999").status_code == 404


def test_expired_and_garbage_tokens(registry_server: RegistryServer) -> None:
    alice = registry_server.make_user()
    short = registry_server.make_token(alice, expires_in_days=1)
    c = registry_server.client(short.token)
    assert c.get("/whoami").status_code == 200
    with registry_server.app.state.sessionmaker() as session:
        session.execute(
            update(ApiToken)
            .where(ApiToken.id == short.token_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        session.commit()
    r = c.get("/whoami")
    assert r.status_code == 401 and r.json()["error"]["message"] == "token has expired"

    for header in (
        "Bearer lrg_nonsense",
        "Bearer not-even-a-token",
        "Basic YWJjOmRlZg==",
        "Bearer",
        "lrg_" + "x" * 40,
        "Bearer " + "lrg_" + "é" * 10,
    ):
        r = registry_server.client(None).get(
            "/whoami", headers={b"Authorization": header.encode("utf-8")}
        )
        assert r.status_code == 401, header
        assert r.json()["error"]["code"] == "unauthenticated"
    # a bad token is refused even where anonymous access would do
    r = registry_server.client("lrg_nope").get(f"/orgs/{registry_server.make_org()}")
    assert r.status_code == 401


def test_expiry_input_checks(registry_server: RegistryServer) -> None:
    a = registry_server.admin
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert a.post("/tokens", json={"name": "t", "expires_at": past}).status_code == 400
    assert a.post("/tokens", json={"name": "t", "expires_in_days": 0}).status_code == 400
    soon = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    r = a.post("/tokens", json={"name": "t", "expires_at": soon, "expires_in_days": 1})
    assert r.status_code == 400
    assert a.post("/tokens", json={"name": "t", "expires_at": soon}).status_code == 201
    r = a.post("/tokens", json={"name": "t", "expires_at": "0001-01-01T00:00:00+05:00"})
    assert r.status_code == 400


def test_last_used_is_recorded(registry_server: RegistryServer) -> None:
    alice = registry_server.make_user()
    with registry_server.app.state.sessionmaker() as session:
        before = session.scalar(select(ApiToken.last_used_at).where(ApiToken.id == alice.token_id))
    assert before is None
    registry_server.client(alice.token).get("/whoami")
    rows = registry_server.client(alice.token).get("/tokens").json()["tokens"]
    (row,) = [t for t in rows if t["id"] == alice.token_id]
    assert row["last_used_at"] is not None


def test_list_users_and_orgs(registry_server: RegistryServer) -> None:
    alice = registry_server.make_user(scope="admin")
    bob = registry_server.make_user()
    org = registry_server.make_org(alice)
    a, b = registry_server.client(alice.token), registry_server.client(bob.token)

    # users: site administrators only, paged by name
    assert b.get("/users").status_code == 403
    names: list[str] = []
    cursor = None
    while True:
        page = registry_server.admin.get("/users", params={"limit": 1, "cursor": cursor}).json()
        names += [u["name"] for u in page["users"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert names == sorted(names) and {"admin", alice.name, bob.name} <= set(names)
    assert registry_server.admin.get("/users", params={"cursor": "nope"}).status_code == 400

    # orgs: every organisation with the caller's role; mine=true keeps the caller's own
    listed = {o["name"]: o["role"] for o in a.get("/orgs", params={"limit": 200}).json()["orgs"]}
    assert listed[org] == "admin"
    assert {o["name"] for o in a.get("/orgs", params={"mine": True}).json()["orgs"]} == {org}
    bobs = b.get("/orgs", params={"limit": 200}).json()["orgs"]
    seen_by_bob = {o["name"]: o["role"] for o in bobs}
    assert seen_by_bob[org] is None
    assert b.get("/orgs", params={"mine": True}).json()["orgs"] == []
    assert registry_server.client(None).get("/orgs").status_code == 401
