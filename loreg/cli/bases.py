"""``loreg base register / manifest / ls / show``: base models and their fingerprints."""

from __future__ import annotations

from pathlib import Path

import click

from loreg.cli.common import (
    client,
    emit,
    fields,
    json_option,
    progress_factory,
    table,
)
from loreg.units import format_bytes


@click.group()
def base() -> None:
    """Base models adapters are trained on."""


@base.command("register")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", required=True, help="Name in Hugging Face repo-id form (org/name).")
@click.option(
    "--no-upload",
    is_flag=True,
    help="Record manifest and fingerprint only; workers cannot merge into it.",
)
@click.option("--description")
@json_option
def register(
    folder: Path, name: str, no_upload: bool, description: str | None, as_json: bool
) -> None:
    """Fingerprint a checkpoint folder and register it (uploading its files)."""
    out = client().register_base(
        folder, name, upload=not no_upload, description=description, progress=progress_factory()
    )
    emit(out, out.fingerprint)


@base.command("ls")
@click.option("--search", "q", help="Text in the name.")
@json_option
def ls(q: str | None, as_json: bool) -> None:
    """List registered base models."""
    items = client().list_bases(q=q)
    emit(
        items,
        lambda: table(
            [
                [
                    b.name,
                    b.num_parameters,
                    format_bytes(b.size_bytes),
                    "yes" if b.has_weights else "no",
                    b.fingerprint[:19],
                ]
                for b in items
            ],
            ["NAME", "PARAMETERS", "SIZE", "WEIGHTS", "FINGERPRINT"],
        ),
    )


@base.command("show")
@click.argument("name")
@json_option
def show(name: str, as_json: bool) -> None:
    """Show a base model: fingerprint, size, tensors."""
    b = client().get_base(name)

    def human() -> None:
        fields(
            [
                ("name", b.name),
                ("fingerprint", b.fingerprint),
                ("structure_hash", b.structure_hash),
                ("num_parameters", b.num_parameters),
                ("size_bytes", b.size_bytes),
                ("created_at", b.created_at),
            ]
        )
        if b.tensors:
            click.echo(f"tensors:         {len(b.tensors)}")

    emit(b, human)


@base.command("manifest")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", help="Put this name (org/name) in the body, ready for POST /bases.")
@click.option(
    "--files",
    "with_files",
    is_flag=True,
    help="Also list every file of FOLDER (path, sha256 digest, size): upload them "
    "as blobs first and workers can merge into the base.",
)
@json_option
def manifest(folder: Path, name: str | None, with_files: bool, as_json: bool) -> None:
    """Print the JSON body that registers FOLDER's checkpoint (POST /api/v1/bases).

    Fingerprint, structure hash, every tensor's dtype and shape: computed here, from the
    files, with nothing sent anywhere. Without --files the registry records the base
    without weights (like 'base register --no-upload'). The output is JSON whatever the
    flags; docs/api.md shows the whole flow with curl."""
    import json

    from loreg.client.bases import manifest_body
    from loreg.client.transfer import hash_files, list_folder
    from loreg.formats.base import fingerprint

    if name is not None:
        from loreg.refs import validate_base_name

        try:
            validate_base_name(name)
        except Exception as exc:
            raise click.BadParameter(str(exc), param_hint="--name") from None
    body: dict[str, object] = {"name": name} if name else {}
    body.update(manifest_body(fingerprint(folder)))
    if with_files:
        body["files"] = [e.to_dict() for e in hash_files(list_folder(folder))]
    click.echo(json.dumps(body, indent=2))


COMMANDS = [base]
