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

from tests.factories.authz_matrix import Case, World, build_world, expect, run_matrix
from tests.fixtures.api import RegistryServer, unique_name


def _fresh_user(world: World, principal: str) -> dict[str, str]:
    return {"user": world.server.make_user().name}


def _fresh_member(world: World, principal: str) -> dict[str, str]:
    return {"member": world.new_member("read").name}


def _victim_token(world: World, principal: str) -> dict[str, str]:
    victim = world.server.make_user()
    return {"token_id": str(victim.token_id)}


CASES: list[Case] = [
    Case("whoami", "GET", "/whoami", expect(200)),
    Case(
        "create user",
        "POST",
        "/users",
        json={"name": "{new}"},
        prepare=lambda w, p: {"new": unique_name("nu")},
        expect=expect(403, site_admin=201),
    ),
    Case(
        "create org",
        "POST",
        "/orgs",
        json={"name": "{new}"},
        prepare=lambda w, p: {"new": unique_name("no")},
        expect=expect(201, org_admin_read_token=403, site_admin_read_token=403),
    ),
    Case("show org", "GET", "/orgs/{org}", expect(200, anonymous=200)),
    Case("show missing org", "GET", "/orgs/no-such-org", expect(404, anonymous=404)),
    Case(
        "add member",
        "POST",
        "/orgs/{org}/members",
        json={"user": "{user}", "role": "read"},
        prepare=_fresh_user,
        expect=expect(403, org_admin=200, site_admin=200),
    ),
    Case(
        "remove member",
        "DELETE",
        "/orgs/{org}/members/{member}",
        prepare=_fresh_member,
        expect=expect(403, org_admin=204, site_admin=204),
    ),
    Case(
        "create token",
        "POST",
        "/tokens",
        json={"name": "t", "scope": "read"},
        expect=expect(201, org_admin_read_token=403, site_admin_read_token=403),
    ),
    Case("list tokens", "GET", "/tokens", expect(200)),
    Case(
        "revoke another user's token",
        "DELETE",
        "/tokens/{token_id}",
        prepare=_victim_token,
        expect=expect(404, site_admin=204, site_admin_write_token=403, site_admin_read_token=403),
    ),
    Case("audit log", "GET", "/audit", expect(403, site_admin=200)),
    Case("list users", "GET", "/users", expect(403, site_admin=200)),
    Case("list orgs", "GET", "/orgs", expect(200)),
    Case("list my orgs", "GET", "/orgs?mine=true", expect(200)),
]


def test_authorisation_matrix(registry_server: RegistryServer) -> None:
    world = build_world(registry_server)
    failures = run_matrix(world, CASES)
    assert not failures, "\n".join(failures)
