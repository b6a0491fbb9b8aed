"""``loreg jobs``, ``combine``, ``export`` and the server mode of ``merge``: work on workers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from loreg.cli.common import (
    JobProgress,
    client,
    emit,
    fields,
    info,
    json_option,
    parse_weights,
    progress_factory,
    table,
    when,
)
from loreg.merge.options import DTYPES, METHODS

if TYPE_CHECKING:
    from loreg.client.models import Job


def wait_for(job_id: str) -> Job:
    """Wait for a job with a progress bar on stderr; failures raise ``JobFailed``."""
    bar = JobProgress(job_id)
    try:
        return client().wait_job(job_id, callback=bar)
    finally:
        bar.close()


def _job_line(job: Job) -> str:
    return f"job {job.id} {job.type} {job.status}"


def _print_submitted(job: Job) -> None:
    click.echo(job.id)
    info(_job_line(job))


def check_output(output: Path | None, no_wait: bool, command: str) -> None:
    """-o and --no-wait exclude each other; one of them is needed."""
    if no_wait and output is not None:
        raise click.UsageError(
            "--no-wait returns before the job has written anything, so -o has nothing to "
            "fetch: drop -o, then fetch the outputs with `loreg jobs wait ID -o DIR`"
        )
    if output is None and not no_wait:
        raise click.UsageError(f"{command} needs -o DIR (or --no-wait)")


def run_and_download(job: Job, output: Path, force: bool, no_wait: bool) -> None:
    """Shared tail of merge/export: wait, then fetch the outputs into ``output``."""
    if no_wait:
        emit(job, lambda: _print_submitted(job))
        return
    info(f"submitted {_job_line(job)}")
    done = wait_for(job.id)
    result = client().download_job_outputs(
        done.id, output, force=force, progress=progress_factory()
    )
    emit({"job": done.to_dict(), "output": result.to_dict()}, str(result.path.absolute()))


def merge_remote(
    refs: tuple[str, ...],
    base: str,
    weights: str | None,
    method: str | None,
    dtype: str | None,
    output: Path | None,
    no_wait: bool,
    force: bool = False,
    extra: dict[str, Any] | None = None,
) -> None:
    """``loreg merge REF... --base NAME -o DIR``: a merge job on the registry's workers."""
    check_output(output, no_wait, "merge")
    job = client().merge(
        list(refs),
        base,
        weights=parse_weights(weights, len(refs)),
        method=method,
        dtype=dtype,
        **(extra or {}),
    )
    run_and_download(job, output or Path("."), force, no_wait)


@click.command()
@click.argument("refs", nargs=-1, required=True, metavar="REF REF...")
@click.option(
    "--to",
    "target",
    required=True,
    metavar="NS/NAME[:TAG]",
    help="Where the combined adapter is pushed.",
)
@click.option("--method", type=click.Choice(METHODS), default="linear", show_default=True)
@click.option("--weights", help="Comma-separated, one per adapter (default: all 1).")
@click.option("--density", type=float, help="For ties/dare/magnitude_prune.")
@click.option("--svd-rank", type=int, help="Rank of the result for svd-based methods.")
@click.option("--seed", type=int, help="Seed for dare_* methods.")
@click.option("--no-wait", is_flag=True, help="Print the job and return at once.")
@json_option
def combine(
    refs: tuple[str, ...],
    target: str,
    method: str,
    weights: str | None,
    density: float | None,
    svd_rank: int | None,
    seed: int | None,
    no_wait: bool,
    as_json: bool,
) -> None:
    """Combine adapters on the same base into a new version (recorded with its lineage)."""
    job = client().combine(
        list(refs),
        target,
        method=method,
        weights=parse_weights(weights, len(refs)),
        density=density,
        svd_rank=svd_rank,
        seed=seed,
    )
    if no_wait:
        emit(job, lambda: _print_submitted(job))
        return
    info(f"submitted {_job_line(job)}")
    done = wait_for(job.id)
    version = (done.result or {}).get("version")
    ref = target
    if isinstance(version, dict) and version.get("number"):
        ref = f"{target.split(':')[0]}@{version['number']}"
    emit(done, ref)


@click.command()
@click.argument("ref", metavar="REF")
@click.option("--dtype", type=click.Choice(DTYPES), help="Cast the tensors.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Target folder.")
@click.option("--force", is_flag=True, help="Replace the target folder if it holds files.")
@click.option("--no-wait", is_flag=True, help="Print the job and return at once.")
@json_option
def export(
    ref: str, dtype: str | None, output: Path | None, force: bool, no_wait: bool, as_json: bool
) -> None:
    """Export one version as a PEFT folder, optionally cast to another dtype."""
    check_output(output, no_wait, "export")
    job = client().export(ref, dtype=dtype)
    run_and_download(job, output or Path("."), force, no_wait)


@click.group()
def jobs() -> None:
    """Jobs on the registry's workers: validate, merge, export, combine."""


@jobs.command("ls")
@click.option(
    "--status", type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"])
)
@click.option("--type", "job_type", type=click.Choice(["validate", "merge", "export", "combine"]))
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@json_option
def jobs_ls(status: str | None, job_type: str | None, limit: int, as_json: bool) -> None:
    """List jobs, newest first."""
    items = client().list_jobs(status=status, type=job_type, limit=limit)

    def human() -> None:
        rows = [
            [j.id, j.type, j.status, f"{j.progress * 100:.0f}%", j.attempts, when(j.created_at)]
            for j in items
        ]
        table(rows, ["ID", "TYPE", "STATUS", "PROGRESS", "ATTEMPTS", "CREATED"])

    emit(items, human)


@jobs.command("show")
@click.argument("job_id", metavar="ID")
@json_option
def jobs_show(job_id: str, as_json: bool) -> None:
    """Show a job: status, progress, attempts, error, result."""
    j = client().get_job(job_id)

    def human() -> None:
        rows: list[tuple[str, Any]] = [
            ("id", j.id),
            ("type", j.type),
            ("status", j.status),
            ("progress", j.progress),
            ("progress message", j.progress_message),
            ("attempts", j.attempts),
            ("created at", j.created_at),
            ("started at", j.started_at),
            ("finished at", j.finished_at),
            ("error", j.error),
            ("result", j.result),
            ("params", j.params),
        ]
        fields([(key, value) for key, value in rows if value not in (None, "", {})], width=17)

    emit(j, human)


@jobs.command("wait")
@click.argument("job_id", metavar="ID")
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="Also download the job's outputs here."
)
@click.option("--force", is_flag=True)
@json_option
def jobs_wait(job_id: str, output: Path | None, force: bool, as_json: bool) -> None:
    """Wait for a job to finish (exit 1 if it failed, 3 if the adapter was invalid)."""
    done = wait_for(job_id)
    if output is not None:
        result = client().download_job_outputs(
            job_id, output, force=force, progress=progress_factory()
        )
        emit({"job": done.to_dict(), "output": result.to_dict()}, str(result.path.absolute()))
        return
    emit(done, _job_line(done))


@jobs.command("cancel")
@click.argument("job_id", metavar="ID")
@json_option
def jobs_cancel(job_id: str, as_json: bool) -> None:
    """Cancel a queued or running job."""
    j = client().cancel_job(job_id)
    emit(j, _job_line(j))


COMMANDS = [combine, export, jobs]
