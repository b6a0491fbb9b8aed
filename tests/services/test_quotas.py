"""Namespace storage quotas: the push path refuses with 413 and a clear message, and the
refused push leaves nothing behind, not even an event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from loreg.db import AdapterVersion, Namespace, WebhookEvent, create_engine_for
from loreg.db.migrate import upgrade
from loreg.db.session import make_sessionmaker
from loreg.errors import TooLarge
from loreg.services import quotas
from tests.factories.db import make_adapter, make_namespace, make_version
from tests.factories.pushes import Models, build_models, push, register_base
from tests.fixtures.api import RegistryServer, unique_name


def test_check_quota_counts_live_versions(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    upgrade(url)
    engine = create_engine_for(url)
    with make_sessionmaker(engine)() as s:
        ns = make_namespace(s, quota_bytes=10_000)
        adapter = make_adapter(s, ns)
        make_version(s, adapter, size_bytes=4000)
        deleted = make_version(s, adapter, size_bytes=5000)
        assert quotas.usage(s, ns) == 9000
        deleted.deleted_at = deleted.created_at
        s.flush()
        assert quotas.usage(s, ns) == 4000
        quotas.check_quota(s, ns, 6000)  # exactly full is fine
        with pytest.raises(TooLarge) as info:
            quotas.check_quota(s, ns.name, 6001)
        assert info.value.code == "quota_exceeded"
        assert "quota" in info.value.message and ns.name in info.value.message
        assert info.value.details["used_bytes"] == 4000
        ns.quota_bytes = None
        quotas.check_quota(s, ns, 10**15)
    engine.dispose()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return build_models(tmp_path_factory.mktemp("models"))


def _db(server: RegistryServer) -> Session:
    engine = create_engine_for(server.settings.effective_database_url)
    return make_sessionmaker(engine)()


def test_push_over_quota_is_413_and_leaves_no_trace(
    registry_server: RegistryServer, models: Models
) -> None:
    owner = registry_server.make_user()
    org = registry_server.make_org(owner)
    client = registry_server.client(owner.token)
    base = "test/" + unique_name("Tiny-Llama")
    assert register_base(client, models.base, base).status_code == 201
    with _db(registry_server) as s:
        s.execute(update(Namespace).where(Namespace.name == org).values(quota_bytes=100))
        s.commit()

    r = push(client, models.adapter.path, f"{org}/tiny", base=base)
    assert r.status_code == 413, r.text
    error: dict[str, Any] = r.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert f"namespace '{org}' is over its storage quota" in error["message"]
    with _db(registry_server) as s:
        ns_id = s.scalar(select(Namespace.id).where(Namespace.name == org))
        assert s.scalars(select(AdapterVersion)).all() == []
        assert s.scalars(select(WebhookEvent).where(WebhookEvent.namespace_id == ns_id)).all() == []

    with _db(registry_server) as s:
        s.execute(update(Namespace).where(Namespace.name == org).values(quota_bytes=None))
        s.commit()
    r = push(client, models.adapter.path, f"{org}/tiny", base=base)
    assert r.status_code == 201, r.text
    with _db(registry_server) as s:
        types = sorted(
            e.type
            for e in s.scalars(select(WebhookEvent).where(WebhookEvent.namespace_id == ns_id))
        )
        assert types == ["tag.moved", "version.created"]
        created = s.scalars(
            select(WebhookEvent).where(WebhookEvent.type == "version.created")
        ).one()
        assert created.payload["ref"] == f"{org}/tiny@1"
        assert created.payload["digest"] == r.json()["digest"]
