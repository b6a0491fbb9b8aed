"""The read path on SQLite and PostgreSQL: what it shows equals the ORM's view of the same
rows, hidden adapters are missing ones, and the number of queries does not depend on how
many versions or adapters are read."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import pytest
from sqlalchemy import Engine, Table, event, select
from sqlalchemy.orm import Session, sessionmaker

from loreg.db import AdapterVersion, Tag
from loreg.errors import InvalidInput, NotFound
from loreg.services import accounts, reads
from loreg.services import adapters as svc
from loreg.services.permissions import Principal
from tests.factories.registry import Registry, fill_registry


@pytest.fixture
def registry(maker: sessionmaker[Session]) -> Registry:
    with maker() as s:
        return fill_registry(s, extra_adapters=6)


def _actor(session: Session, token: str) -> Principal:
    return accounts.authenticate(session, token)


@contextmanager
def counted(engine: Engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_a_version_shows_what_its_rows_say(session: Session, registry: Registry) -> None:
    member = _actor(session, registry.member_token)
    ns, name = registry.public.split("/")
    view = reads.show_version(session, member, ns, name, "3")
    orm = svc.get_version(session, member, ns, name, "3")
    assert (view.id, view.number, view.digest, view.r, view.labels, view.target_modules) == (
        orm.id,
        orm.number,
        orm.digest,
        orm.r,
        orm.labels,
        orm.target_modules,
    )
    assert view.tags == ["latest"]
    assert [f.path for f in view.files] == ["adapter_config.json", "adapter_model.safetensors"]
    assert [f.digest for f in view.files] == [f.blob_digest for f in orm.files]
    assert view.base_name == orm.base_model.name if orm.base_model else False
    assert view.created_by == registry.member
    # lineage names both parents in position order (what the route always showed)
    assert [p.parent for p in view.lineage] == [f"{registry.public}@1", f"{registry.private}@1"]
    assert view.ref == f"{registry.public}@3"


@pytest.mark.parametrize(
    "ref, number", [(":prod", 1), (":stable", 1), ("", 3), (":latest", 3), ("@1", 1), ("@3", 3)]
)
def test_resolve_every_form(session: Session, registry: Registry, ref: str, number: int) -> None:
    member = _actor(session, registry.member_token)
    assert reads.resolve(session, member, registry.public + ref).number == number


def test_resolve_by_digest_and_deleted_versions(session: Session, registry: Registry) -> None:
    member = _actor(session, registry.member_token)
    digest = registry.digests[f"{registry.public}@3"]
    assert reads.resolve(session, member, f"{registry.public}@{digest}").number == 3
    ns, name = registry.public.split("/")
    with pytest.raises(NotFound, match="no version"):
        reads.show_version(session, member, ns, name, "2")
    shown = reads.show_version(session, member, ns, name, "2", include_deleted=True)
    assert shown.deleted_at is not None and shown.delete_reason == "leaked a secret"
    with pytest.raises(NotFound, match="no version"):
        reads.resolve(session, member, f"{registry.public}@2")


def test_latest_without_a_tag_row_is_the_newest_live_version(
    session: Session, registry: Registry
) -> None:
    session.execute(cast(Table, Tag.__table__).delete().where(Tag.name == "latest"))
    session.commit()
    member = _actor(session, registry.member_token)
    assert reads.resolve(session, member, registry.public).number == 3
    assert reads.resolve(session, member, registry.private).number == 2


def test_hidden_is_missing(session: Session, registry: Registry) -> None:
    outsider = _actor(session, registry.outsider_token)
    member = _actor(session, registry.member_token)
    ns, name = registry.private.split("/")
    answers = []
    for actor in (outsider, None):
        for call in (
            lambda a: reads.show_version(session, a, ns, name, "1"),
            lambda a: reads.resolve(session, a, registry.private + "@1"),
            lambda a: reads.list_versions(session, a, ns, name),
            lambda a: reads.show_version(session, a, ns, "no-such-adapter", "1"),
        ):
            with pytest.raises(NotFound) as caught:
                call(actor)
            answers.append(caught.value.code)
    assert set(answers) == {"not_found"}
    with pytest.raises(NotFound) as hidden:
        reads.show_version(session, outsider, ns, name, "1")
    with pytest.raises(NotFound) as missing:
        reads.show_version(session, outsider, ns, name + "x", "1")
    assert str(hidden.value).replace(name, "N") == str(missing.value).replace(name + "x", "N")
    assert reads.show_version(session, member, ns, name, "1").number == 1
    with pytest.raises(InvalidInput):
        reads.show_version(session, member, "Bad Name", name, "1")


def test_list_versions_pages_newest_first(session: Session, registry: Registry) -> None:
    member = _actor(session, registry.member_token)
    ns, name = registry.public.split("/")
    first = reads.list_versions(session, member, ns, name, limit=1)
    second = reads.list_versions(session, member, ns, name, limit=1, cursor=first.next_cursor)
    assert [v.number for v in first.items] == [3] and first.next_cursor
    assert [v.number for v in second.items] == [1] and second.next_cursor is None
    every = reads.list_versions(session, member, ns, name, include_deleted=True)
    assert [v.number for v in every.items] == [3, 2, 1]


def test_a_bare_connection_reads_the_same(engine: Engine, registry: Registry) -> None:
    with Session(engine) as session:
        member = _actor(session, registry.member_token)
        expected = reads.resolve(session, member, registry.public + ":prod")
    with engine.connect() as conn:
        assert accounts.authenticate(conn, registry.member_token) == member
        assert reads.resolve(conn, member, registry.public + ":prod") == expected
        ns, name = registry.private.split("/")
        with pytest.raises(NotFound):
            reads.show_version(conn, None, ns, name, "7")


def test_queries_do_not_depend_on_how_many_versions(
    engine: Engine, maker: sessionmaker[Session], registry: Registry
) -> None:
    with maker() as session:
        ids = list(session.scalars(select(AdapterVersion.id).order_by(AdapterVersion.id)))
        counts = []
        for n in (1, 3, 5, len(ids)):  # the third version has lineage: one query more
            with counted(engine) as statements:
                views = reads.version_views(session, ids[:n])
            assert [v.id for v in views] == ids[:n]
            counts.append(len(statements))
        assert counts[0] == 1 and counts[1] == counts[2] == counts[3] == 2


def test_search_queries_do_not_depend_on_the_page_size(
    engine: Engine, maker: sessionmaker[Session], registry: Registry
) -> None:
    with maker() as session:
        member = _actor(session, registry.member_token)
        counts = []
        for limit in (1, 3, 50):
            with counted(engine) as statements:
                page = svc.search_views(session, member, svc.SearchFilters(), limit=limit)
            assert len(page.items) == min(limit, len(registry.adapters))
            counts.append(len(statements))
        assert counts[0] == counts[1] == counts[2] == 1  # the page, latest versions and tags


def test_search_views_match_the_orm_search(session: Session, registry: Registry) -> None:
    member = _actor(session, registry.member_token)
    for filters in (
        svc.SearchFilters(),
        svc.SearchFilters(labels=["stage=prod"]),
        svc.SearchFilters(rank_min=16),
        svc.SearchFilters(text="SUPPORT"),
        svc.SearchFilters(namespace=registry.org, target="v_proj"),
    ):
        views = svc.search_views(session, member, filters, limit=50).items
        orm = svc.search(session, member, filters, limit=50).items
        assert [(v.namespace, v.name) for v in views] == [
            (s.adapter.namespace.name, s.adapter.name) for s in orm
        ]
        for v, s in zip(views, orm, strict=True):
            assert v.versions_count == s.versions_count and v.tags == dict(sorted(s.tags.items()))
            assert (v.latest.number if v.latest else None) == (
                s.latest.number if s.latest else None
            )
    outsider = _actor(session, registry.outsider_token)
    names = {
        v.name for v in svc.search_views(session, outsider, svc.SearchFilters(), limit=50).items
    }
    assert registry.private.split("/")[1] not in names
    assert registry.public.split("/")[1] in names


def test_text_search_finds_rare_words_beyond_the_newest_adapters(
    session: Session, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The newest adapters are read first; a word they lack is found by the second
    statement, wherever it is (a trigram index on PostgreSQL)."""
    monkeypatch.setattr(svc, "TEXT_WINDOW", 2)
    member = _actor(session, registry.member_token)
    found = svc.search_views(session, member, svc.SearchFilters(text="tickets"), limit=5)
    assert [f"{v.namespace}/{v.name}" for v in found.items] == [registry.public]
    by_version = svc.search_views(session, member, svc.SearchFilters(text="checkpoint 3"))
    assert [f"{v.namespace}/{v.name}" for v in by_version.items] == [registry.public]
    common = svc.search_views(session, member, svc.SearchFilters(text="extra adapter"), limit=2)
    assert len(common.items) == 2 and common.next_cursor is not None
    rest = svc.search_views(
        session,
        member,
        svc.SearchFilters(text="extra adapter"),
        limit=50,
        cursor=common.next_cursor,
    )
    assert len(common.items) + len(rest.items) == 6
    assert not {v.name for v in common.items} & {v.name for v in rest.items}
    # a LIKE wildcard in the text is a character, not a pattern
    assert svc.search_views(session, member, svc.SearchFilters(text="%")).items == []
