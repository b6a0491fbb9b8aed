"""``loreg validate ADAPTER_DIR --base BASE_DIR|NAME``: the compatibility check.

Against a folder it runs offline; against a registered base name it fetches that base's
manifest (tensor names, dtypes, shapes) from the registry: no weights are downloaded.

Exit codes (docs/design.md §10): 0 compatible, 3 incompatible, 1 unreadable input,
2 usage error. With ``--json`` stdout holds exactly one JSON document.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from loreg.errors import InvalidInput, LoregError
from loreg.formats.base import fingerprint, read_manifest
from loreg.formats.compat import check_compatibility
from loreg.formats.peft import read_adapter
from loreg.formats.types import BaseManifest

EXIT_INCOMPATIBLE = 3


def _match_hint(match: str) -> str | None:
    """How to turn an offline check's match into ``exact`` (docs/cli.md, "Base match")."""
    if match == "unverified":
        return (
            "shapes checked, weights not: pass --expected-fingerprint with the fingerprint "
            "of the base the adapter was trained on (`loreg base show NAME` prints it) "
            "for an exact match"
        )
    if match == "structural":
        return (
            "same shapes, other weights: validate against the base whose fingerprint is "
            "the expected one for an exact match"
        )
    return None


@click.command()
@click.argument("adapter_dir", type=click.Path(path_type=Path))
@click.option(
    "--base",
    "base_arg",
    required=True,
    metavar="DIR_OR_NAME",
    help="Base model checkpoint folder (safetensors, single file or shards), or the name of "
    "a base registered in the registry (its manifest is fetched; no weights).",
)
@click.option(
    "--expected-fingerprint",
    default=None,
    help="sha256:... of the base the adapter was trained on; computes the base's fingerprint.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def validate(
    adapter_dir: Path, base_arg: str, expected_fingerprint: str | None, as_json: bool
) -> None:
    """Check that ADAPTER_DIR (a PEFT LoRA folder) fits the base model in --base."""
    try:
        adapter = read_adapter(adapter_dir)
        manifest, base_label = _base_manifest(base_arg, expected_fingerprint)
        report = check_compatibility(adapter, manifest, expected_fingerprint=expected_fingerprint)
    except LoregError as e:
        if as_json:
            click.echo(json.dumps({"error": e.to_dict()}, indent=2))
        else:
            click.echo(f"error: {e.message}", err=True)
        sys.exit(1)
    except OSError as e:
        if as_json:
            click.echo(json.dumps({"error": {"code": "io_error", "message": str(e)}}))
        else:
            click.echo(f"error: {e}", err=True)
        sys.exit(1)
    if report.ok:  # how to get an exact match matters once the adapter fits at all
        report.match_hint = report.match_hint or _match_hint(report.match)
    if as_json:
        doc = report.to_dict()
        doc["adapter"] = str(adapter_dir.absolute())
        doc["base"] = base_label
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(f"{adapter_dir.absolute()} on {base_label}")
        click.echo(report.format())
    sys.exit(0 if report.ok else EXIT_INCOMPATIBLE)


def _base_manifest(base_arg: str, expected_fingerprint: str | None) -> tuple[BaseManifest, str]:
    """(manifest, how to name it) for a folder, else for a registered base's name."""
    folder = Path(base_arg)
    if folder.exists():
        manifest = fingerprint(folder) if expected_fingerprint else read_manifest(folder)
        return manifest, str(folder.absolute())
    from loreg.refs import validate_base_name

    try:
        validate_base_name(base_arg)
    except InvalidInput:
        raise InvalidInput(
            f"--base {base_arg!r}: no such folder, and not a base model name (org/name): "
            "give a checkpoint folder or a name from 'loreg base ls'"
        ) from None
    return _registered_manifest(base_arg)


def _registered_manifest(name: str) -> tuple[BaseManifest, str]:
    from loreg.cli.common import client
    from loreg.cli.hints import NOT_FOUND, hinted

    with hinted(
        {
            NOT_FOUND: f"no folder '{name}' here either; register it with "
            f"'loreg base register DIR --name {name}' or see 'loreg base ls'"
        }
    ):
        base = client().get_base(name)
    manifest = BaseManifest(
        tensors={n: (t.dtype, tuple(t.shape)) for n, t in base.tensors.items()},
        structure_hash=base.structure_hash,
        fingerprint=base.fingerprint,
        num_parameters=base.num_parameters,
        size_bytes=base.size_bytes,
        aliases=dict(base.aliases),
    )
    return manifest, f"{name} (registered, {base.fingerprint[:19]})"
