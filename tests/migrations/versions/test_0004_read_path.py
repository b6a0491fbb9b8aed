"""Revision 0004 on SQLite and PostgreSQL: a registry filled at 0003 upgrades with every row
intact and reads back through the read path (text search included); on PostgreSQL the
trigram indexes exist and text search uses them."""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from loreg.db import (
    Adapter,
    AdapterVersion,
    Lineage,
    Tag,
    VersionFile,
    VersionLabel,
    VersionTargetModule,
    create_engine_for,
    make_sessionmaker,
)
from loreg.db.migrate import current, head, upgrade
from loreg.services import accounts, reads
from loreg.services import adapters as svc
from tests.factories.registry import fill_registry

TABLES = (Adapter, AdapterVersion, VersionFile, VersionLabel, VersionTargetModule, Tag, Lineage)


def _counts(session: Session) -> dict[str, int]:
    return {m.__name__: session.scalar(select(func.count()).select_from(m)) or 0 for m in TABLES}


def test_upgrade_from_0003_keeps_every_row_and_reads_it_back(db_url: str) -> None:
    upgrade(db_url, "0003_tenant_isolation")
    engine = create_engine_for(db_url)
    maker = make_sessionmaker(engine)
    try:
        with maker() as s:
            reg = fill_registry(s, extra_adapters=3)
            before = _counts(s)
            shown_before = reads.resolve(
                s, accounts.authenticate(s, reg.member_token), reg.public + ":prod"
            )

        upgrade(db_url)
        assert current(db_url) == head()

        with maker() as s:
            assert _counts(s) == before
            member = accounts.authenticate(s, reg.member_token)
            assert reads.resolve(s, member, reg.public + ":prod") == shown_before
            ns, name = reg.private.split("/")
            assert [v.number for v in reads.list_versions(s, member, ns, name).items] == [2, 1]
            everything = svc.search_views(s, member, svc.SearchFilters(), limit=50).items
            assert {f"{v.namespace}/{v.name}" for v in everything} == set(reg.adapters)
            found = svc.search_views(s, member, svc.SearchFilters(text="tickets")).items
            assert [f"{v.namespace}/{v.name}" for v in found] == [reg.public]
            if engine.dialect.name == "postgresql":
                names = set(
                    s.scalars(
                        text("SELECT indexname FROM pg_indexes WHERE indexname LIKE '%_trgm'")
                    )
                )
                assert names == {
                    "ix_adapters_name_trgm",
                    "ix_adapters_description_trgm",
                    "ix_adapter_versions_description_trgm",
                }
                s.execute(text("SET LOCAL enable_seqscan = off"))
                plan = "\n".join(
                    s.scalars(
                        text(
                            "EXPLAIN SELECT id FROM adapters"
                            " WHERE lower(name) LIKE '%' || :n || '%'"
                        ),
                        {"n": "tickets"},
                    )
                )
                assert "ix_adapters_name_trgm" in plan
    finally:
        engine.dispose()
