"""``loreg validate ADAPTER_DIR --base BASE_DIR``: the compatibility check, offline.

Exit codes (docs/design.md §10): 0 compatible, 3 incompatible, 1 unreadable input,
2 usage error. With ``--json`` stdout holds exactly one JSON document.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from loreg.errors import LoregError
from loreg.formats.base import fingerprint, read_manifest
from loreg.formats.compat import check_compatibility
from loreg.formats.peft import read_adapter

EXIT_INCOMPATIBLE = 3


def _match_hint(match: str) -> str | None:
    """How to turn an offline check's match into ``exact`` (docs/cli.md, "Base match")."""
    if match == "unverified":
        return ("shapes checked, weights not: pass --expected-fingerprint with the fingerprint "
                "of the base the adapter was trained on (`loreg base show NAME` prints it) "
                "for an exact match")
    if match == "structural":
        return ("same shapes, other weights: validate against the base whose fingerprint is "
                "the expected one for an exact match")
    return None


@click.command()
@click.argument("adapter_dir", type=click.Path(path_type=Path))
@click.option(
    "--base",
    "base_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Base model checkpoint folder (safetensors, single file or shards).",
)
@click.option(
    "--expected-fingerprint",
    default=None,
    help="sha256:... of the base the adapter was trained on; computes the base's fingerprint.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def validate(
    adapter_dir: Path, base_dir: Path, expected_fingerprint: str | None, as_json: bool
) -> None:
    """Check that ADAPTER_DIR (a PEFT LoRA folder) fits the base model in --base."""
    try:
        adapter = read_adapter(adapter_dir)
        manifest = fingerprint(base_dir) if expected_fingerprint else read_manifest(base_dir)
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
        doc["base"] = str(base_dir.absolute())
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(f"{adapter_dir.absolute()} on {base_dir.absolute()}")
        click.echo(report.format())
    sys.exit(0 if report.ok else EXIT_INCOMPATIBLE)
