"""The machinery of the HTTP authorisation matrix (tests/api/test_authz_matrix*.py).

``PRINCIPALS`` names every principal; ``expect(default, **overrides)`` builds a row's
``{principal: status}`` map; ``Case`` is one row (an endpoint call); ``run_matrix`` runs
every row as every principal in a ``World`` (``build_world``) and lists the mismatches.

The world: an organisation ``{org}`` in which ``reader``, ``writer`` and the ``org_admin*``
principals have those roles; ``outsider`` is a user with no role; ``site_admin*`` is the
bootstrap admin. The suffix names the token scope when it is not the natural one
(``org_admin_read_token``: the org admin, through a read-scoped token).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.fixtures.api import Account, RegistryServer

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
                case.method,
                _fill(case.path, values),
                json=_fill(case.json, values) if case.json is not None else None,
            )
            if r.status_code != wanted:
                failures.append(
                    f"{case.name} as {principal}: {r.status_code} != {wanted} ({r.text[:200]})"
                )
            if r.status_code >= 400:
                assert set(r.json()) == {"error"}, r.text
    return failures
