"""One rule in every path: a tensor or config option the engine does not apply is an error.

An adapter with one extra unknown tensor, or with an unknown config option that would change
the math, goes through every way into loreg: ``loreg validate`` and ``loreg merge --local``
(the CLI, offline), push (the service), a server merge on SQLite + a local folder and on
PostgreSQL + S3, export and combine (the engine and the jobs). Each refuses it clearly,
names the tensor or option, and leaves no output behind. Versions stored before this rule
existed (the bad adapter behind a version row) are refused by the jobs, not merged.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from loreg.db import VersionFile
from loreg.errors import Incompatible
from loreg.merge.combine import combine_adapters
from loreg.merge.export import export_adapter
from loreg.merge.stream import merge_checkpoint
from loreg.worker.loop import Worker
from tests.factories.tampered import UNKNOWN_OPTION, UNKNOWN_TENSOR, tamper
from tests.factories.worker_stack import Models, Stack, sha256_file

KINDS = ["tensor", "option"]
NAME = {"tensor": UNKNOWN_TENSOR, "option": UNKNOWN_OPTION}


def _loreg(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from loreg.cli.main import main; sys.argv[0] = 'loreg'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def bad(request: pytest.FixtureRequest, models: Models, tmp_path: Path) -> tuple[str, Path]:
    kind = request.param
    return kind, tamper(models.adapter.path, tmp_path / f"bad-{kind}", kind)


@pytest.mark.parametrize("bad", KINDS, indirect=True)
def test_validate_cli(bad: tuple[str, Path], models: Models) -> None:
    kind, folder = bad
    done = _loreg("validate", str(folder), "--base", str(models.base.path), "--json")
    assert done.returncode == 3, done.stdout + done.stderr
    problems = json.loads(done.stdout)["problems"]
    assert any(NAME[kind] in (p["message"] + str(p.get("tensor"))) for p in problems), problems


@pytest.mark.parametrize("bad", KINDS, indirect=True)
def test_merge_local_cli(bad: tuple[str, Path], models: Models, tmp_path: Path) -> None:
    kind, folder = bad
    out = tmp_path / "merged"
    done = _loreg(
        "merge",
        str(folder),
        "--base",
        str(models.base.path),
        "-o",
        str(out),
        "--local",
        "--device",
        "cpu",
        "--json",
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert NAME[kind] in done.stdout
    assert not out.exists() and not list(tmp_path.glob("merged*"))


@pytest.mark.parametrize("path", ["merge", "export", "combine"])
@pytest.mark.parametrize("bad", KINDS, indirect=True)
def test_engine(bad: tuple[str, Path], path: str, models: Models, tmp_path: Path) -> None:
    kind, folder = bad
    out = tmp_path / path
    with pytest.raises(Incompatible) as err:
        if path == "merge":
            merge_checkpoint(models.base.path, [(folder, 1.0)], out, device="cpu")
        elif path == "export":
            export_adapter(folder, out)
        else:
            combine_adapters([(folder, 0.5), (models.adapter.path, 0.5)], out, device="cpu")
    assert NAME[kind] in err.value.message, err.value.message
    assert not out.exists() and not list(tmp_path.glob(f"{path}.*"))


@pytest.mark.parametrize("bad", KINDS, indirect=True)
def test_push_refuses(bad: tuple[str, Path], stack: Stack, models: Models) -> None:
    kind, folder = bad
    stack.register_base(models.base.path, "org/tiny")
    with pytest.raises(Incompatible) as err:
        stack.push(folder, "admin", "bad", "org/tiny")
    assert NAME[kind] in err.value.message


def _legacy_version(stack: Stack, models: Models, folder: Path, name: str) -> None:
    """A version whose files are ``folder``'s, as a registry without this rule stored it."""
    version = stack.push(models.adapter.path, "admin", name, "org/tiny")
    entries = {e.path: e for e in stack.upload_dir(folder)}
    with stack.sessions() as s:
        for row in s.scalars(select(VersionFile).where(VersionFile.version_id == version.id)):
            row.blob_digest = entries[row.path].digest
            row.size = entries[row.path].size
        s.commit()
    assert entries["adapter_model.safetensors"].digest == sha256_file(
        folder / "adapter_model.safetensors"
    )


def _jobs_refuse(stack: Stack, models: Models, kind: str, folder: Path) -> None:
    stack.register_base(models.base.path, "org/tiny")
    _legacy_version(stack, models, folder, "legacy")
    stack.push(models.adapter.path, "admin", "good", "org/tiny")
    Worker(stack.settings, sessions=stack.sessions, store=stack.store, types=["validate"]).run(
        once=True
    )
    jobs = {
        "merge": stack.submit("merge", {"base": "org/tiny", "adapters": ["admin/legacy"]}),
        "export": stack.submit("export", {"adapter": "admin/legacy"}),
        "combine": stack.submit(
            "combine", {"adapters": ["admin/legacy", "admin/good"], "target": "admin/combined"}
        ),
    }
    Worker(stack.settings, sessions=stack.sessions, store=stack.store).run(once=True)
    for path, job_id in jobs.items():
        job = stack.job(job_id)
        assert job.status == "failed", (path, job.status, job.result)
        assert job.error is not None and job.error["code"] == "incompatible", (path, job.error)
        assert NAME[kind] in job.error["message"], (path, job.error)
        assert job.artifacts == [], path


@pytest.mark.parametrize("bad", KINDS, indirect=True)
def test_server_jobs_sqlite_local(bad: tuple[str, Path], stack: Stack, models: Models) -> None:
    _jobs_refuse(stack, models, *bad)


@pytest.mark.slow
@pytest.mark.parametrize("bad", KINDS, indirect=True)
def test_server_jobs_postgres_s3(bad: tuple[str, Path], pg_stack: Stack, models: Models) -> None:
    _jobs_refuse(pg_stack, models, *bad)
