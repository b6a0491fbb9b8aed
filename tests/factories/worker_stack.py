"""A registry's back end (DB + blob store) seeded through the services, for worker tests.

``Stack`` gives helpers to upload a folder, register a base with its files, push a PEFT
adapter and submit jobs as a user, and build ``loreg worker`` subprocess environments;
``OutageStack`` adds the PostgreSQL cluster the test may stop and start. ``Models`` is the
worker tests' tiny base and adapter; ``assert_matches_peft`` checks a merged folder against
PEFT's own merge. The fixtures (``stack``, ``pg_stack``, ``outage_stack``, ``models``) are in
tests/worker/conftest.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from safetensors.torch import load_file
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from loreg.config import Settings
from loreg.db import AdapterVersion, BaseModelRecord, Job, create_engine_for, make_sessionmaker
from loreg.db.migrate import upgrade
from loreg.formats.base import fingerprint, folder_config
from loreg.services import accounts, adapters, bases, blobs, jobs
from loreg.services.manifests import FileEntry
from loreg.services.permissions import Principal
from loreg.storage import BlobStore, open_store
from tests.factories import TinyAdapter, TinyModel, load_model
from tests.fixtures.postgres import PgCluster

REPO = Path(__file__).resolve().parents[2]


def sha256_file(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


@dataclass
class Stack:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: BlobStore
    admin: Principal

    def upload_dir(self, folder: Path) -> list[FileEntry]:
        entries = []
        with self.sessions() as s:
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                digest = sha256_file(path)
                size = self.store.put_file(digest, path)
                blobs.record_blob(s, self.admin, digest, size)
                entries.append(FileEntry(path.relative_to(folder).as_posix(), digest, size))
            s.commit()
        return entries

    def register_base(
        self, folder: Path, name: str, *, fingerprint_of: Path | None = None
    ) -> BaseModelRecord:
        """Register ``folder`` with its files; ``fingerprint_of`` lies about the weights."""
        manifest = fingerprint(fingerprint_of or folder)
        assert manifest.fingerprint is not None
        files = self.upload_dir(folder)
        spec = bases.BaseSpec(
            name=name,
            tensors=manifest.tensors,
            fingerprint=manifest.fingerprint,
            files=files,
            config=folder_config(folder),
        )
        with self.sessions() as s:
            record, _ = bases.register_base(s, self.admin, spec)
            s.commit()
        return record

    def push(self, folder: Path, namespace: str, name: str, base: str) -> AdapterVersion:
        files = self.upload_dir(folder)
        with self.sessions() as s:
            out = adapters.push_version(
                s,
                self.store,
                self.admin,
                namespace,
                name,
                adapters.PushSpec(files=files, base=base),
            )
            s.commit()
            return out.version

    def submit(self, job_type: str, params: dict[str, Any]) -> str:
        with self.sessions() as s:
            sub = jobs.submit(
                s, self.admin, job_type, params, max_attempts=self.settings.job_max_attempts
            )
            s.commit()
            return sub.job.id

    def job(self, job_id: str) -> Job:
        with self.sessions() as s:
            job = s.get(Job, job_id)
            assert job is not None
            _ = list(job.artifacts)
            return job

    def wait(self, job_id: str, cond: Callable[[Job], bool], timeout: float = 60) -> Job:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if cond(job):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out; job is {job.status} {job.progress} "
                    f"{job.progress_message} {job.error}"
                )
            time.sleep(0.05)

    def download_outputs(self, job_id: str, dest: Path) -> Path:
        job = self.job(job_id)
        for art in job.artifacts:
            self.store.download(art.blob_digest, dest / art.path)
        return dest

    def env(self, home: Path, **settings: Any) -> dict[str, str]:
        """Environment for a ``loreg worker`` subprocess on this stack."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOREG_")}
        env.update(
            {
                "LOREG_HOME": str(home),
                "LOREG_DATABASE_URL": self.settings.effective_database_url,
                "LOREG_STORAGE_URL": self.settings.effective_storage_url,
                "LOREG_WORKER_DEVICE": "cpu",
                "LOREG_WORKER_POLL_SECONDS": "0.2",
            }
        )
        if self.settings.s3_endpoint_url:
            env["LOREG_S3_ENDPOINT_URL"] = self.settings.s3_endpoint_url
            env["LOREG_S3_REGION"] = "us-east-1"
        for k, v in settings.items():
            env[f"LOREG_{k.upper()}"] = str(v)
        return env

    def spawn_worker(
        self, home: Path, *args: str, log: Path, **settings: Any
    ) -> subprocess.Popen[bytes]:
        """``python -m cli.main worker ARGS`` in its own process (its own LOREG_HOME)."""
        with open(log, "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-c", "from loreg.cli.main import main; main()", "worker", *args],
                cwd=REPO,
                env=self.env(home, **settings),
                stdout=out,
                stderr=out,
            )


def make_stack(settings: Settings) -> Iterator[Stack]:
    upgrade(settings.effective_database_url)
    engine = create_engine_for(settings.effective_database_url)
    sessions = make_sessionmaker(engine)
    with sessions() as s:
        created = accounts.bootstrap_admin(s)
        assert created is not None
        user = created[0]
        s.commit()
        admin = Principal(
            user_id=user.id,
            username=user.name,
            namespace_id=user.namespace_id,
            is_admin=True,
            scope="admin",
        )
    yield Stack(settings, engine, sessions, open_store(settings), admin)
    engine.dispose()


@dataclass
class OutageStack(Stack):
    """A ``Stack`` whose PostgreSQL cluster the test may ``stop()`` and ``start()``."""

    cluster: PgCluster | None = None


@dataclass
class Models:
    base: TinyModel
    adapter: TinyAdapter
    other: TinyModel  # a different base of the same shapes (another seed)


def merged_state(folder: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def peft_reference(models: Models) -> dict[str, torch.Tensor]:
    model = load_model(models.base.path)
    merged = PeftModel.from_pretrained(model, str(models.adapter.path)).merge_and_unload()
    return {k: v.detach().clone() for k, v in merged.state_dict().items()}


def assert_matches_peft(out_dir: Path, models: Models) -> None:
    got = merged_state(out_dir)
    want = peft_reference(models)
    assert got, "no tensors in the output"
    for name, tensor in got.items():
        torch.testing.assert_close(tensor, want[name], rtol=1e-5, atol=1e-6, msg=name)
    model = load_model(out_dir)  # transformers loads the folder as it is
    ids = torch.tensor([[1, 5, 9, 33]])
    peft = PeftModel.from_pretrained(load_model(models.base.path), str(models.adapter.path))
    with torch.no_grad():
        torch.testing.assert_close(
            model(input_ids=ids).logits, peft(input_ids=ids).logits, rtol=1e-5, atol=1e-5
        )
