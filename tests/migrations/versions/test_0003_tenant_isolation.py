"""Revision 0003 on SQLite and PostgreSQL: a database filled at 0002 upgrades with all its
rows intact, blob possession granted from what the old rows prove, and delivery logs cut back
to status codes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from loreg.db import (
    AdapterVersion,
    ApiToken,
    AuditEvent,
    BaseModelFile,
    BaseModelRecord,
    Blob,
    BlobGrant,
    UiSession,
    User,
    VersionFile,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    create_engine_for,
    make_sessionmaker,
)
from loreg.db.migrate import current, head, upgrade
from loreg.services import accounts, blobs, ui_sessions
from loreg.services.permissions import Principal
from tests.factories.db import (
    add_member,
    make_adapter,
    make_blob,
    make_namespace,
    make_user,
    make_version,
)


def _principal(user: User) -> Principal:
    return Principal(
        user_id=user.id,
        username=user.name,
        namespace_id=user.namespace_id,
        is_admin=False,
        scope="write",
    )


def _fill_at_0002(session: Session) -> dict[str, Any]:
    alice = make_user(session, "alice")
    outsider = make_user(session, "mallory")
    acme = make_namespace(session, "acme")
    add_member(session, acme, alice, "write")
    adapter = make_adapter(session, acme, "bot")
    live, gone = make_version(session, adapter), make_version(session, adapter)
    gone.deleted_at = datetime.now(UTC)
    in_live, in_gone, uploaded, stray, base_blob = (
        make_blob(session, d)
        for d in (
            b"in live version",
            b"in deleted version",
            b"uploaded by alice",
            b"stray",
            b"base",
        )
    )
    session.add_all(
        [
            VersionFile(
                version_id=live.id,
                path="adapter_model.safetensors",
                blob_digest=in_live.digest,
                size=in_live.size,
            ),
            VersionFile(
                version_id=gone.id,
                path="adapter_model.safetensors",
                blob_digest=in_gone.digest,
                size=in_gone.size,
            ),
            AuditEvent(
                actor_user_id=alice.id,
                action="blob.upload",
                target_type="blob",
                target=uploaded.digest,
                details={"size": uploaded.size},
            ),
        ]
    )
    base = BaseModelRecord(
        name="org/base",
        fingerprint="sha256:" + "f0" * 32,
        structure_hash="sha256:" + "e0" * 32,
        manifest={},
        num_parameters=1,
        size_bytes=4,
    )
    session.add(base)
    session.flush()
    session.add(
        BaseModelFile(
            base_model_id=base.id,
            path="model.safetensors",
            blob_digest=base_blob.digest,
            size=base_blob.size,
        )
    )
    token, _value = accounts._issue_token(session, alice, "ci", "write", None)
    hook = Webhook(
        namespace_id=acme.id, url="https://hooks.example/x", secret="s" * 20, events=["*"]
    )
    event = WebhookEvent(type="ping", namespace_id=acme.id, payload={"zen": "x"})
    session.add_all([hook, event])
    session.flush()
    log = [
        {
            "at": "2026-01-01T00:00:00+00:00",
            "status_code": 500,
            "duration_ms": 3.0,
            "error": "HTTP 500: Traceback ... password=hunter2",
        },
        {
            "at": "2026-01-01T00:01:00+00:00",
            "status_code": None,
            "duration_ms": 1.0,
            "error": "ConnectError: refused",
        },
    ]
    session.add(
        WebhookDelivery(
            webhook_id=hook.id,
            event_id=event.id,
            status="pending",
            attempts=2,
            last_status_code=None,
            attempt_log=log,
            last_error="HTTP 500: Traceback ... password=hunter2",
        )
    )
    session.commit()
    return {
        "alice": alice.id,
        "mallory": outsider.id,
        "acme": acme.id,
        "alice_ns": alice.namespace_id,
        "in_live": in_live.digest,
        "in_gone": in_gone.digest,
        "uploaded": uploaded.digest,
        "stray": stray.digest,
        "base": base_blob.digest,
        "token": token.id,
        "versions": [live.id, gone.id],
    }


def test_upgrade_from_0002_keeps_every_row_and_grants_what_was_proven(db_url: str) -> None:
    upgrade(db_url, "0002")
    engine = create_engine_for(db_url)
    maker = make_sessionmaker(engine)
    try:
        with maker() as s:
            ids = _fill_at_0002(s)
            counts_before = {
                model.__name__: len(s.scalars(select(model)).all())
                for model in (
                    User,
                    AdapterVersion,
                    VersionFile,
                    Blob,
                    BaseModelFile,
                    ApiToken,
                    AuditEvent,
                    Webhook,
                    WebhookEvent,
                    WebhookDelivery,
                )
            }

        upgrade(db_url)
        assert current(db_url) == head()

        with maker() as s:
            counts_after = {
                name: len(s.scalars(select(model)).all())
                for name, model in (
                    (m.__name__, m)
                    for m in (
                        User,
                        AdapterVersion,
                        VersionFile,
                        Blob,
                        BaseModelFile,
                        ApiToken,
                        AuditEvent,
                        Webhook,
                        WebhookEvent,
                        WebhookDelivery,
                    )
                )
            }
            assert counts_after == counts_before
            grants = {(g.digest, g.namespace_id) for g in s.scalars(select(BlobGrant))}
            assert grants == {
                (ids["in_live"], ids["acme"]),
                (ids["in_gone"], ids["acme"]),
                (ids["uploaded"], ids["alice_ns"]),
            }
            gone = s.get(AdapterVersion, ids["versions"][1])
            assert gone is not None and gone.deleted_at is not None and gone.files
            assert s.get(ApiToken, ids["token"]) is not None

            delivery = s.scalars(select(WebhookDelivery)).one()
            assert delivery.last_error == "HTTP 500"
            assert [e["error"] for e in delivery.attempt_log] == [
                "HTTP 500",
                "ConnectError: refused",
            ]
            assert delivery.attempt_log[0]["duration_ms"] == 3.0
            assert delivery.attempts == 2

            # the services read the upgraded data as they read new data
            alice = s.get(User, ids["alice"])
            mallory = s.get(User, ids["mallory"])
            assert alice is not None and mallory is not None
            everything = [ids[k] for k in ("in_live", "in_gone", "uploaded", "stray", "base")]
            held = blobs.held_blobs(s, _principal(alice), everything)
            assert set(held) == {ids["in_live"], ids["in_gone"], ids["uploaded"], ids["base"]}
            assert set(blobs.held_blobs(s, _principal(mallory), everything)) == {ids["base"]}
            token = s.get(ApiToken, ids["token"])
            assert token is not None
            principal = accounts.principal_of(token, alice)
            sid = ui_sessions.start(s, principal, lifetime=timedelta(days=1))
            s.commit()
            assert ui_sessions.authenticate(s, sid).user_id == alice.id
            assert len(s.scalars(select(UiSession)).all()) == 1
    finally:
        engine.dispose()
