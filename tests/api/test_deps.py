"""Dependencies: a read request writes nothing (its token's last use is recorded later, off
the request path), and a search costs the same number of queries whatever its page size."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, select

from loreg.db import ApiToken
from tests.factories.registry import Registry, fill_registry
from tests.fixtures.api import RegistryServer

WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "UPSERT", "MERGE")


@contextmanager
def statements_of(server: RegistryServer) -> Iterator[list[str]]:
    """Every SQL statement the server's engine runs meanwhile (any thread)."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    engine = server.app.state.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _writes(statements: list[str]) -> list[str]:
    return [s for s in statements if s.lstrip().split(None, 1)[0].upper() in WRITES]


def _last_used(server: RegistryServer, token_id: int) -> Any:
    with server.app.state.sessionmaker() as session:
        return session.scalar(select(ApiToken.last_used_at).where(ApiToken.id == token_id))


def test_a_read_request_performs_no_write(registry_server: RegistryServer) -> None:
    with registry_server.app.state.sessionmaker() as session:
        reg: Registry = fill_registry(session)
    alice = registry_server.make_user()
    registry_server.add_member(reg.org, alice, "read")
    uses = registry_server.app.state.token_uses
    uses.interval = 3600  # the background writer waits: nothing of it lands in the window
    assert _last_used(registry_server, alice.token_id) is None  # a use is due at once
    reads = [
        f"/adapters/{reg.public}/versions/1",
        f"/resolve?ref={reg.private}:latest",
        f"/adapters/{reg.public}/versions",
        "/adapters?limit=5&label=stage=prod",
        f"/adapters/{reg.public}",
        f"/adapters/{reg.public}/tags",
        "/whoami",
        f"/adapters/{reg.public}/versions/1?zz_route=1",
        "/adapters?zz_route=1",
    ]
    client = registry_server.client(alice.token)
    with statements_of(registry_server) as seen:
        for path in reads:
            assert client.get(path).status_code == 200, path
    assert seen and not _writes(seen), _writes(seen)
    # the use was noted, and is recorded off the request path
    assert _last_used(registry_server, alice.token_id) is None
    uses.flush()
    assert _last_used(registry_server, alice.token_id) is not None


def test_search_queries_do_not_grow_with_the_page_size(registry_server: RegistryServer) -> None:
    with registry_server.app.state.sessionmaker() as session:
        reg = fill_registry(session, extra_adapters=12)
    client = registry_server.client(reg.member_token)
    every: dict[str, set[int]] = {}
    for query in ("", f"&namespace={reg.org}&label=stage=prod", "&text=extra"):
        counts = set()
        for limit in (1, 4, 12):
            for route in ("", "&zz_route=1"):  # the fast path and the framework's route
                with statements_of(registry_server) as seen:
                    r = client.get(f"/adapters?limit={limit}{query}{route}")
                assert r.status_code == 200 and len(r.json()["adapters"]) == limit
                counts.add(len(seen))
        every[query] = counts
    plain, filtered, text = every.values()
    assert len(plain) == 1 and plain == filtered, every
    # a text search reads the newest adapters first and, when they do not fill the page,
    # asks the text indexes once more: one statement more at most, whatever the page size
    assert max(text) <= min(plain) + 1, every


def test_version_lists_and_job_lists_do_not_grow_with_the_page(
    registry_server: RegistryServer,
) -> None:
    with registry_server.app.state.sessionmaker() as session:
        reg = fill_registry(session)
    client = registry_server.client(reg.member_token)
    counts = set()
    for limit in (1, 2):
        with statements_of(registry_server) as seen:
            assert client.get(f"/adapters/{reg.public}/versions?limit={limit}").status_code == 200
        counts.add(len(seen))
    assert len(counts) == 1
    admin = registry_server.admin
    job_counts = set()
    for limit in (1, 5):
        with statements_of(registry_server) as seen:
            assert admin.get(f"/jobs?limit={limit}").status_code == 200
        job_counts.add(len(seen))
    assert len(job_counts) == 1
