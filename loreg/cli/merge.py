"""``loreg merge``: merge adapters into a base model.

``loreg merge ADAPTER_DIR... --base BASE_DIR -o OUT --local`` runs the streaming engine
(``loreg.merge``) on this machine, no server involved. Without ``--local`` the arguments
are registry references and the merge runs on the registry's workers; that mode is wired in
``_remote`` (server merges come with the client).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from loreg.cli import extras
from loreg.cli.common import emit, info, json_mode, json_option, parse_weights
from loreg.merge.options import DTYPES, METHODS, SIGN_METHODS, MethodOptions
from loreg.units import parse_size


def shard_bytes(value: str) -> int:
    """``--shard-size``: ``5GB``, ``500MB``, ``2GiB`` or a number of bytes (``loreg.units``)."""
    try:
        return parse_size(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: expected a positive size like 5GB, 500MB or 2GiB",
            param_hint="--shard-size",
        ) from None


@click.command()
@click.argument("adapters", nargs=-1, required=True)
@click.option("--base", required=True, help="Base model: a folder with --local.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Output folder (must not exist, or be empty).",
)
@click.option("--local", is_flag=True, help="Merge on this machine; ADAPTERS are PEFT folders.")
@click.option("--weights", default=None, help="Comma-separated weight per adapter (default 1).")
@click.option("--method", type=click.Choice(METHODS), default="linear", show_default=True)
@click.option(
    "--density", type=float, default=None, help="Fraction kept by ties, dare_* and magnitude_prune."
)
@click.option(
    "--majority-sign-method", type=click.Choice(SIGN_METHODS), default="total", show_default=True
)
@click.option("--svd-rank", type=int, default=None, help="Rank kept by the svd method.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of dare_* masks.")
@click.option(
    "--dtype",
    type=click.Choice(DTYPES),
    default=None,
    help="Cast every floating tensor (default: keep the base's dtypes).",
)
@click.option(
    "--shard-size", default="5GB", show_default=True, help="Maximum size of an output shard."
)
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True
)
@click.option(
    "--expected-fingerprint",
    default=None,
    help="sha256:... the base must have; checked in the same pass.",
)
@click.option("--no-wait", is_flag=True, help="Server mode: print the job and return at once.")
@json_option
def merge(
    adapters: tuple[str, ...],
    base: str,
    output: Path | None,
    local: bool,
    weights: str | None,
    method: str,
    density: float | None,
    majority_sign_method: str,
    svd_rank: int | None,
    seed: int,
    dtype: str | None,
    shard_size: str,
    device: str,
    expected_fingerprint: str | None,
    no_wait: bool,
    as_json: bool,
) -> None:
    """Merge ADAPTERS into the base model and write full weights to -o.

    With --local, ADAPTERS are PEFT adapter folders and --base a checkpoint folder; the
    result loads with transformers' from_pretrained.
    """
    if local and no_wait:
        raise click.UsageError(
            "--no-wait is for merges on the registry; --local merges here and waits"
        )
    if not local:
        _remote(
            adapters,
            base,
            output,
            weights,
            method,
            dtype,
            no_wait,
            {
                "density": density,
                "majority_sign_method": majority_sign_method,
                "svd_rank": svd_rank,
                "seed": seed,
                "max_shard_bytes": shard_bytes(shard_size),
            },
        )
        return
    if output is None:
        raise click.UsageError("merge --local needs -o DIR")
    extras.require("merge", "merge --local")
    options = MethodOptions.from_params(
        {
            "method": method,
            "density": density,
            "majority_sign_method": majority_sign_method,
            "svd_rank": svd_rank,
            "seed": seed,
        }
    )
    kwargs: dict[str, Any] = {
        "options": options,
        "dtype": dtype,
        "max_shard_bytes": shard_bytes(shard_size),
        "device": device,
        "expected_fingerprint": expected_fingerprint,
    }
    _local(
        [Path(a) for a in adapters],
        Path(base),
        output,
        parse_weights(weights, len(adapters)) or [1.0] * len(adapters),
        kwargs,
    )


def _remote(
    refs: tuple[str, ...],
    base: str,
    output: Path | None,
    weights: str | None,
    method: str,
    dtype: str | None,
    no_wait: bool,
    extra: dict[str, Any],
) -> None:
    """The server mode: a merge job on the registry's workers, outputs downloaded to -o."""
    from loreg.cli.jobs import merge_remote

    merge_remote(
        refs,
        base,
        weights,
        method,
        dtype,
        output,
        no_wait,
        extra={k: v for k, v in extra.items() if v is not None},
    )


def _local(
    adapters: list[Path], base: Path, output: Path, weights: list[float], kwargs: dict[str, Any]
) -> None:
    from tqdm import tqdm

    from loreg.merge.stream import merge_checkpoint

    for path in [*adapters, base]:
        if not path.is_dir():
            raise click.BadParameter(f"{path} is not a folder")
    bar = tqdm(
        total=0,
        desc="merge",
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        disable=None,
        leave=False,
        dynamic_ncols=True,
    )

    def progress(done: int, total: int, _name: str) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    try:
        result = merge_checkpoint(
            base, list(zip(adapters, weights, strict=True)), output, progress=progress, **kwargs
        )
    finally:
        bar.close()
    doc = {
        "output": str(result.out_dir.absolute()),
        "base_fingerprint": result.fingerprint,
        "method": result.method,
        "device": result.device,
        "tensors": result.tensors,
        "changed_tensors": result.changed_tensors,
        "seconds": round(result.seconds, 3),
        "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in result.files],
    }
    if not json_mode():
        info(
            f"merged {len(adapters)} adapter(s) into {base.absolute()} on {result.device}"
            f" in {result.seconds:.1f}s; base fingerprint {result.fingerprint}"
        )
    emit(doc, str(result.out_dir.absolute()))
