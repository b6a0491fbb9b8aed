"""The authorisation matrix over HTTP: every principal x every endpoint -> expected status.

The table ``CASES`` is the specification. Each row is one endpoint call; ``expect`` maps
each principal of ``PRINCIPALS`` to the status it must get (``expect(default, **overrides)``
builds the map). ``prepare`` (optional) runs before each call, per principal, and returns
extra values for the ``path``/``json`` placeholders, so rows that destroy something (remove
a member, revoke a token) get a fresh victim every time.

The world every row runs in (``World``): an organisation ``{org}`` in which ``reader``,
``writer`` and the ``org_admin*`` principals have those roles; ``outsider`` is a user with no
role; ``site_admin*`` is the bootstrap admin. The suffix names the token scope when it is
not the natural one (``org_admin_read_token``: the org admin, through a read-scoped token).

To cover more endpoints (adapters, versions, tags...), append rows to ``CASES`` (e.g. with a
``prepare`` that pushes a private adapter into ``{org}`` through ``world.admin``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.fixtures.api import Account, RegistryServer, unique_name

#: principal -> (role in {org} or None, token scope); ``site_admin*`` are site admins.
PRINCIPALS: dict[str, tuple[str | None, str] | None] = {
    "anonymous": None,
    "bad_token": None,
    "outsider": (None, "write"),
    "reader": ("read", "write"),
    "writer": ("write", "write"),
    "org_admin": ("admin", "admin"),
    "org_admin_write_token": ("admin", "write"),
    "org_admin_read_token": ("admin", "read"),
    "site_admin": (None, "admin"),
    "site_admin_write_token": (None, "write"),
    "site_admin_read_token": (None, "read"),
}


def expect(default: int, **overrides: int) -> dict[str, int]:
    """``{principal: status}``: ``default`` for all, with ``overrides``; 401 for no/bad token
    unless overridden."""
    table = {p: default for p in PRINCIPALS}
    table.update(anonymous=401, bad_token=401)
    unknown = set(overrides) - set(PRINCIPALS)
    assert not unknown, f"unknown principals {unknown}"
    table.update(overrides)
    return table


@dataclass
class World:
    server: RegistryServer
    org: str
    accounts: dict[str, Account] = field(default_factory=dict)

    @property
    def admin(self) -> httpx.Client:
        return self.server.admin

    def client(self, principal: str) -> httpx.Client:
        if principal == "anonymous":
            return self.server.client(None)
        if principal == "bad_token":
            return self.server.client("lrg_this-token-does-not-exist")
        return self.server.client(self.accounts[principal].token)

    def new_member(self, role: str = "read") -> Account:
        user = self.server.make_user()
        self.server.add_member(self.org, user, role)
        return user

    @property
    def values(self) -> dict[str, str]:
        return {"org": self.org}


def build_world(server: RegistryServer) -> World:
    org_admin = server.make_user(scope="admin")
    world = World(server=server, org=server.make_org(org_admin))
    for principal, spec in PRINCIPALS.items():
        if spec is None:
            continue
        role, scope = spec
        if principal.startswith("site_admin"):
            account = server.make_token(server.admin_token, scope=scope)
        elif principal.startswith("org_admin"):
            account = org_admin if scope == "admin" else server.make_token(org_admin, scope=scope)
        else:
            account = server.make_user(scope=scope)
            if role is not None:
                server.add_member(world.org, account, role)
        world.accounts[principal] = account
    return world


Prepare = Callable[[World, str], Mapping[str, Any]]


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    expect: dict[str, int]
    json: Mapping[str, Any] | None = None
    prepare: Prepare | None = None


def _fresh_user(world: World, principal: str) -> dict[str, str]:
    return {"user": world.server.make_user().name}


def _fresh_member(world: World, principal: str) -> dict[str, str]:
    return {"member": world.new_member("read").name}


def _victim_token(world: World, principal: str) -> dict[str, str]:
    victim = world.server.make_user()
    return {"token_id": str(victim.token_id)}


CASES: list[Case] = [
    Case("whoami", "GET", "/whoami", expect(200)),
    Case("create user", "POST", "/users", json={"name": "{new}"},
         prepare=lambda w, p: {"new": unique_name("nu")},
         expect=expect(403, site_admin=201)),
    Case("create org", "POST", "/orgs", json={"name": "{new}"},
         prepare=lambda w, p: {"new": unique_name("no")},
         expect=expect(201, org_admin_read_token=403, site_admin_read_token=403)),
    Case("show org", "GET", "/orgs/{org}", expect(200, anonymous=200)),
    Case("show missing org", "GET", "/orgs/no-such-org", expect(404, anonymous=404)),
    Case("add member", "POST", "/orgs/{org}/members", json={"user": "{user}", "role": "read"},
         prepare=_fresh_user, expect=expect(403, org_admin=200, site_admin=200)),
    Case("remove member", "DELETE", "/orgs/{org}/members/{member}", prepare=_fresh_member,
         expect=expect(403, org_admin=204, site_admin=204)),
    Case("create token", "POST", "/tokens", json={"name": "t", "scope": "read"},
         expect=expect(201, org_admin_read_token=403, site_admin_read_token=403)),
    Case("list tokens", "GET", "/tokens", expect(200)),
    Case("revoke another user's token", "DELETE", "/tokens/{token_id}", prepare=_victim_token,
         expect=expect(404, site_admin=204, site_admin_write_token=403,
                       site_admin_read_token=403)),
    Case("audit log", "GET", "/audit", expect(403, site_admin=200)),
    Case("list users", "GET", "/users", expect(403, site_admin=200)),
    Case("list orgs", "GET", "/orgs", expect(200)),
    Case("list my orgs", "GET", "/orgs?mine=true", expect(200)),
]


def _fill(value: Any, values: Mapping[str, Any]) -> Any:
    """Fill ``{placeholders}``; a string that is exactly one placeholder takes the raw value
    (a push body's file list), not its string form."""
    if isinstance(value, str):
        if value.startswith("{") and value.endswith("}") and value[1:-1] in values:
            return values[value[1:-1]]
        return value.format(**values)
    if isinstance(value, Mapping):
        return {k: _fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    return value


def run_matrix(world: World, cases: list[Case]) -> list[str]:
    """Every case for every principal; the list of mismatches (empty when all hold)."""
    failures = []
    for case in cases:
        assert set(case.expect) == set(PRINCIPALS), f"{case.name}: incomplete expectations"
        for principal, wanted in case.expect.items():
            values = dict(world.values)
            if case.prepare is not None:
                values.update(case.prepare(world, principal))
            r = world.client(principal).request(
                case.method, _fill(case.path, values),
                json=_fill(case.json, values) if case.json is not None else None)
            if r.status_code != wanted:
                failures.append(f"{case.name} as {principal}: {r.status_code} != {wanted}"
                                f" ({r.text[:200]})")
            if r.status_code >= 400:
                assert set(r.json()) == {"error"}, r.text
    return failures


def test_authorisation_matrix(registry_server: RegistryServer) -> None:
    world = build_world(registry_server)
    failures = run_matrix(world, CASES)
    assert not failures, "\n".join(failures)
