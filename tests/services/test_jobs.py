"""Jobs on SQLite and PostgreSQL, user side: submit (params, permissions, dedupe), the reuse
of finished outputs until they expire, cancellation."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from loreg.db import (
    Adapter,
    AdapterVersion,
    BaseModelFile,
    BaseModelRecord,
    Blob,
    Job,
    Namespace,
    User,
)
from loreg.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from loreg.services import job_queue, jobs
from loreg.services.permissions import Principal

DIGEST = "sha256:" + "ab" * 32


def _user(s: Session, name: str, *, admin: bool = False) -> Principal:
    ns = Namespace(name=name, kind="user")
    s.add(ns)
    s.flush()
    user = User(name=name, namespace_id=ns.id, is_admin=admin)
    s.add(user)
    s.flush()
    return Principal(
        user_id=user.id,
        username=name,
        namespace_id=ns.id,
        is_admin=admin,
        scope="admin" if admin else "write",
    )


def _base(s: Session, name: str = "org/base", *, with_files: bool = True) -> BaseModelRecord:
    base = BaseModelRecord(
        name=name,
        fingerprint="sha256:" + "f0" * 32,
        structure_hash="sha256:" + "e0" * 32,
        manifest={},
        num_parameters=1,
        size_bytes=4,
    )
    s.add(base)
    s.flush()
    if with_files:
        if s.get(Blob, DIGEST) is None:
            s.add(Blob(digest=DIGEST, size=4))
            s.flush()
        s.add(
            BaseModelFile(
                base_model_id=base.id, path="model.safetensors", blob_digest=DIGEST, size=4
            )
        )
    return base


def _adapter(
    s: Session,
    owner: Principal,
    name: str,
    base: BaseModelRecord | None,
    *,
    digest_byte: str = "01",
    visibility: str = "private",
) -> AdapterVersion:
    adapter = Adapter(namespace_id=owner.namespace_id, name=name, visibility=visibility)
    s.add(adapter)
    s.flush()
    version = AdapterVersion(
        adapter_id=adapter.id,
        number=1,
        digest="sha256:" + digest_byte * 32,
        peft_type="LORA",
        r=4,
        lora_alpha=8,
        target_modules=["q_proj"],
        num_parameters=10,
        size_bytes=40,
        adapter_config={},
        base_model_id=base.id if base else None,
    )
    s.add(version)
    s.flush()
    return version


@pytest.fixture
def world(maker: sessionmaker[Session]) -> dict[str, Principal]:
    with maker() as s:
        alice = _user(s, "alice")
        bob = _user(s, "bob")
        admin = _user(s, "root", admin=True)
        base = _base(s)
        _adapter(s, alice, "a1", base, digest_byte="01")
        _adapter(s, alice, "a2", base, digest_byte="02")
        _adapter(s, bob, "pub", base, digest_byte="03", visibility="public")
        s.commit()
    return {"alice": alice, "bob": bob, "admin": admin}


def _merge(
    s: Session, who: Principal, refs: list[str | dict[str, object]], **extra: object
) -> jobs.Submitted:
    params = {"base": "org/base", "adapters": refs, **extra}
    return jobs.submit(s, who, "merge", params)


# --------------------------------------------------------------------------- submit


def test_submit_resolves_inputs_and_dedupes(
    maker: sessionmaker[Session], world: dict[str, Principal]
) -> None:
    alice = world["alice"]
    with maker() as s:
        first = _merge(s, alice, ["alice/a1", "bob/pub"])
        s.commit()
        assert first.created and first.job.status == "queued"
        inputs = first.job.params["inputs"]
        assert [i["resolved"] for i in inputs] == ["alice/a1@1", "bob/pub@1"]
        assert first.job.params["base"]["fingerprint"] == "sha256:" + "f0" * 32
        # the same merge, written differently (explicit version, dict form): same job
        again = _merge(s, alice, [{"ref": "alice/a1@1", "weight": 1.0}, "bob/pub:latest"])
        assert not again.created and again.job.id == first.job.id
        # another weight or dtype is another job
        assert _merge(s, alice, [{"ref": "alice/a1", "weight": 0.5}, "bob/pub"]).created
        assert _merge(s, alice, ["alice/a1", "bob/pub"], dtype="float16").created
        s.commit()
        # a failed job is not reused
        s.get(Job, first.job.id).status = "failed"  # type: ignore[union-attr]
        s.commit()
        assert _merge(s, alice, ["alice/a1", "bob/pub"]).created


def test_submit_permissions(maker: sessionmaker[Session], world: dict[str, Principal]) -> None:
    alice, bob = world["alice"], world["bob"]
    with maker() as s:
        with pytest.raises(NotFound):  # bob cannot read alice's private adapter
            _merge(s, bob, ["alice/a1"])
        with pytest.raises(PermissionDenied):  # bob cannot write into alice's namespace
            jobs.submit(
                s,
                bob,
                "combine",
                {"adapters": ["bob/pub"], "method": "ties", "to": "alice/combined"},
            )
        ok = jobs.submit(
            s,
            alice,
            "combine",
            {
                "adapters": ["alice/a1", "alice/a2"],
                "method": "ties",
                "density": 0.5,
                "to": "alice/combined:best",
            },
        )
        assert ok.job.params["target"] == {"namespace": "alice", "name": "combined", "tag": "best"}
        s.commit()
        # bob may not see alice's job (it reads alice's private adapters) ...
        with pytest.raises(NotFound):
            jobs.get(s, bob, ok.job.id)
        # ... but may see a job over public inputs only, even one someone else submitted
        pub = _merge(s, alice, ["bob/pub"])
        s.commit()
        assert jobs.get(s, bob, pub.job.id).id == pub.job.id
        with pytest.raises(PermissionDenied):
            jobs.cancel(s, bob, pub.job.id)
        assert [j.id for j in jobs.list_jobs(s, bob).items] == []
        assert {j.id for j in jobs.list_jobs(s, world["admin"]).items} == {ok.job.id, pub.job.id}


@pytest.mark.parametrize(
    ("job_type", "params", "fragment"),
    [
        ("nope", {}, "unknown job type"),
        ("merge", {"adapters": []}, "adapters"),
        ("merge", {"adapters": ["alice/a1"], "method": "bogus"}, "method"),
        ("merge", {"adapters": ["alice/a1"], "dtype": "int8"}, "dtype"),
        ("merge", {"adapters": ["alice/a1"], "surprise": 1}, "surprise"),
        ("merge", {"adapters": ["../etc"]}, "namespace"),
        ("combine", {"adapters": ["alice/a1"], "to": "alice/x@3"}, "cannot name a version"),
        ("export", {"adapter": "alice/a1", "dtype": "float8"}, "dtype"),
    ],
)
def test_submit_rejects_bad_params(
    maker: sessionmaker[Session],
    world: dict[str, Principal],
    job_type: str,
    params: dict[str, object],
    fragment: str,
) -> None:
    with maker() as s, pytest.raises(InvalidInput) as err:
        jobs.submit(s, world["alice"], job_type, params)
    assert fragment in str(err.value.message) + str(err.value.details)


def test_merge_needs_base_files(maker: sessionmaker[Session], world: dict[str, Principal]) -> None:
    with maker() as s:
        _base(s, "org/headers-only", with_files=False)
        with pytest.raises(Conflict, match="no files"):
            jobs.submit(
                s, world["alice"], "merge", {"base": "org/headers-only", "adapters": ["alice/a1"]}
            )


def test_enqueue_validation_is_idempotent(
    maker: sessionmaker[Session], world: dict[str, Principal]
) -> None:
    with maker() as s:
        version = s.scalars(select(AdapterVersion).order_by(AdapterVersion.id)).first()
        assert version is not None
        one = jobs.enqueue_validation(s, version)
        two = jobs.enqueue_validation(s, version)
        s.commit()
        assert one.id == two.id and one.type == "validate"
        assert one.params["inputs"][0]["version_id"] == version.id


def test_merge_outputs_expire_and_the_job_is_then_run_again(
    maker: sessionmaker[Session], world: dict[str, Principal]
) -> None:
    alice = world["alice"]
    ttl = timedelta(days=7)
    with maker() as s:
        job = _merge(s, alice, ["alice/a1"]).job
        s.commit()
        job_queue.claim(s, "w", lease_seconds=30, types=["merge"])
        s.commit()
        done = job_queue.finish(
            s,
            job.id,
            "w",
            result={},
            outputs_ttl=ttl,
            artifacts=[job_queue.Artifact("model.safetensors", DIGEST, 4)],
        )
        s.commit()
        assert done.outputs_expire_at is not None and done.finished_at is not None
        assert done.outputs_expire_at - done.finished_at == ttl
        assert not _merge(s, alice, ["alice/a1"]).created  # outputs kept: reused
        s.rollback()
        s.execute(
            update(Job)
            .where(Job.id == job.id)
            .values(outputs_expire_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        s.commit()
        again = _merge(s, alice, ["alice/a1"])  # expired: a new job
        assert again.created and again.job.id != job.id


def test_simultaneous_identical_submits_make_one_job(
    maker: sessionmaker[Session], world: dict[str, Principal], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two transactions submit the same merge at once: the second waits for the first's
    commit (advisory lock on PostgreSQL, the write lock on SQLite) and finds its job."""
    real_find = jobs.find_duplicate

    def slow_find(session: Session, key: str) -> Job | None:
        found = real_find(session, key)
        time.sleep(0.3)  # widen the window between the check and the insert
        return found

    monkeypatch.setattr(jobs, "find_duplicate", slow_find)
    barrier = threading.Barrier(2)
    results: list[jobs.Submitted] = []
    errors: list[BaseException] = []

    def submit() -> None:
        try:
            with maker() as s:
                barrier.wait()
                results.append(_merge(s, world["alice"], ["alice/a1"]))
                s.commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(r.created for r in results) == [False, True]
    assert results[0].job.id == results[1].job.id
    with maker() as s:
        assert len(s.scalars(select(Job).where(Job.type == "merge")).all()) == 1


def test_can_cancel(maker: sessionmaker[Session], world: dict[str, Principal]) -> None:
    """Submitter or site admin, while the job is unfinished; what the UI's button shows."""
    alice, bob, admin = world["alice"], world["bob"], world["admin"]
    with maker() as s:
        job = _merge(s, alice, ["alice/a1"]).job
        s.commit()
        assert jobs.can_cancel(s, alice, job) and jobs.can_cancel(s, admin, job)
        assert not jobs.can_cancel(s, bob, job) and not jobs.can_cancel(s, None, job)
        with pytest.raises(NotFound):  # not even visible to bob
            jobs.cancel(s, bob, job.id)
        jobs.cancel(s, alice, job.id)
        s.commit()
        assert not jobs.can_cancel(s, alice, job) and not jobs.can_cancel(s, admin, job)
        assert jobs.cancel(s, alice, job.id).status == "cancelled"  # idempotent


def test_cancel_queued_and_running(
    maker: sessionmaker[Session], world: dict[str, Principal]
) -> None:
    alice = world["alice"]
    with maker() as s:
        queued = _merge(s, alice, ["alice/a1"]).job
        running = _merge(s, alice, ["alice/a2"]).job
        s.commit()
        # claim the second one (the first is older, so claim twice and requeue... simpler:
        # cancel the first while queued, then claim the second)
        assert jobs.cancel(s, alice, queued.id).status == "cancelled"
        s.commit()
        claimed = job_queue.claim(s, "w", lease_seconds=30)
        assert claimed is not None and claimed.id == running.id
        s.commit()
        assert job_queue.renew_lease(s, running.id, "w", lease_seconds=30).cancel_requested is False
        job = jobs.cancel(s, alice, running.id)
        s.commit()
        assert job.status == "running" and job.cancel_requested
        assert job_queue.renew_lease(s, running.id, "w", lease_seconds=30).cancel_requested
        assert job_queue.mark_cancelled(s, running.id, "w").status == "cancelled"
        s.commit()
        with pytest.raises(Conflict):
            done = _merge(s, alice, ["bob/pub"]).job
            s.commit()
            job_queue.claim(s, "w", lease_seconds=30)
            job_queue.finish(s, done.id, "w", result={})
            s.commit()
            jobs.cancel(s, alice, done.id)


def test_list_jobs_pages_with_opaque_cursors(
    maker: sessionmaker[Session], world: dict[str, Principal]
) -> None:
    alice = world["alice"]
    t0 = datetime.now(UTC)
    with maker() as s:
        for i in range(5):  # two share a creation time: the id breaks the tie
            s.add(
                Job(
                    type="validate",
                    params={"i": i},
                    submitted_by=alice.user_id,
                    created_at=t0 + timedelta(seconds=min(i, 3)),
                )
            )
        s.commit()
        seen: list[str] = []
        cursor = None
        for _ in range(3):
            page = jobs.list_jobs(s, alice, limit=2, cursor=cursor)
            seen += [j.id for j in page.items]
            cursor = page.next_cursor
        assert cursor is None and len(seen) == 5 == len(set(seen))
        assert seen == [j.id for j in jobs.list_jobs(s, alice, limit=5).items]
        for bad in ("garbage", "eyJrIjoiYXVkaXQiLCJpZCI6MX0"):  # not ours: an audit cursor
            with pytest.raises(InvalidInput):
                jobs.list_jobs(s, alice, cursor=bad)
