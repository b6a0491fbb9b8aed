"""``loreg push / pull / ls / show / tag``: adapters and their versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from loreg.cli.common import client, emit, human_bytes, info, json_option, progress_factory, table


def _labels(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--label")
        out[key] = value
    return out


def version_ref(v: dict[str, Any]) -> str:
    ns = v.get("namespace") or (v.get("adapter") or {}).get("namespace")
    name = v.get("name") or (v.get("adapter") or {}).get("name")
    number = v.get("number") or v.get("version")
    return f"{ns}/{name}@{number}"


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("target", metavar="NS/NAME[:TAG]")
@click.option("--base", help="The registered base model it was trained on.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE",
              help="Free-form label (dataset, run, metric); repeatable.")
@click.option("--tag", "tags", multiple=True, help="Another tag to set; repeatable.")
@click.option("--description")
@click.option("--public/--private", "public", default=None,
              help="Visibility of the adapter (new adapters are private).")
@json_option
def push(folder: Path, target: str, base: str | None, labels: tuple[str, ...],
         tags: tuple[str, ...], description: str | None, public: bool | None,
         as_json: bool) -> None:
    """Push a PEFT adapter folder as a new version (uploads only what the registry lacks)."""
    result = client().push(
        folder, target, base=base, tags=tags, labels=_labels(labels), description=description,
        public=public, progress=progress_factory(),
    )
    v = result.version

    def human() -> None:
        click.echo(f"pushed {version_ref(v)}  {v.get('digest', '')}")
        info(f"uploaded {result.uploaded_files} file(s), {human_bytes(result.uploaded_bytes)} "
             f"of {human_bytes(result.total_bytes)}")

    emit(result.to_dict(), human)


@click.command()
@click.argument("ref", metavar="REF")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Target folder (default: ./NAME).")
@click.option("--force", is_flag=True, help="Replace the target folder if it holds files.")
@json_option
def pull(ref: str, output: Path | None, force: bool, as_json: bool) -> None:
    """Download a version (ns/name, :tag, @N or @sha256:...) into a folder, atomically."""
    result = client().pull(ref, output, force=force, progress=progress_factory())

    def human() -> None:
        click.echo(str(result.path))
        info(f"{len(result.files)} file(s): {human_bytes(result.downloaded_bytes)} downloaded, "
             f"{human_bytes(result.cached_bytes)} from the cache")

    emit(result.to_dict(), human)


@click.command("ls")
@click.argument("namespace", required=False)
@click.option("--base", help="Only adapters on this base model.")
@click.option("--target", help="Only adapters targeting this module (e.g. q_proj).")
@click.option("--label", "label", multiple=True,
              help="Only adapters with this label (KEY=VALUE); repeatable.")
@click.option("--rank-min", type=int)
@click.option("--rank-max", type=int)
@click.option("--search", "text", help="Text in the name or description.")
@click.option("--limit", type=click.IntRange(min=1), default=None)
@json_option
def ls(namespace: str | None, base: str | None, target: str | None, label: tuple[str, ...],
       rank_min: int | None, rank_max: int | None, text: str | None, limit: int | None,
       as_json: bool) -> None:
    """List and search adapters."""
    items = list(client().search(namespace, base=base, target=target, rank_min=rank_min,
                                 rank_max=rank_max, label=list(label) or None, text=text,
                                 limit=limit))

    def human() -> None:
        rows = []
        for a in items:
            latest = a.get("latest") or a.get("latest_version") or {}
            if not isinstance(latest, dict):
                latest = {"number": latest}
            rows.append([
                f"{a.get('namespace')}/{a.get('name')}",
                latest.get("number", a.get("versions_count", "")),
                a.get("base") or latest.get("base") or "",
                latest.get("r", a.get("r", "")),
                "public" if a.get("public") else "private",
                a.get("updated_at") or a.get("created_at") or "",
            ])
        table(rows, ["ADAPTER", "LATEST", "BASE", "RANK", "VISIBILITY", "UPDATED"])

    emit(items, human)


@click.command()
@click.argument("ref", metavar="REF")
@json_option
def show(ref: str, as_json: bool) -> None:
    """Show one version: what it is, its base, files, labels, validation state."""
    v = client().get_version(ref)
    config = v.get("adapter_config") or {}

    def human() -> None:
        fields = [
            ("version", version_ref(v)), ("digest", v.get("digest")),
            ("base", v.get("base") or v.get("base_model")),
            ("peft type", v.get("peft_type")), ("rank", v.get("r")),
            ("alpha", v.get("lora_alpha")), ("targets", v.get("target_modules")),
            ("tgt params", config.get("target_parameters")),
            ("token ids", config.get("trainable_token_indices") or config.get("token_indices")),
            ("dtype", v.get("dtype")), ("parameters", v.get("num_parameters")),
            ("size", human_bytes(v.get("size_bytes"))),
            ("validation", v.get("validation_state") or v.get("state")),
            ("tags", v.get("tags")), ("labels", v.get("labels")),
            ("created", v.get("created_at")), ("by", v.get("created_by")),
        ]
        for key, value in fields:
            if value not in (None, "", [], {}):
                click.echo(f"{key + ':':<12} {value}")
        files = v.get("files") or []
        if files:
            click.echo("files:")
            for f in files:
                click.echo(f"  {f['path']}  {human_bytes(f.get('size'))}  {f['digest']}")

    emit(v, human)


@click.command()
@click.argument("ref", metavar="REF")
@click.argument("tag")
@click.option("--delete", is_flag=True, help="Remove TAG from REF's adapter instead.")
@json_option
def tag(ref: str, tag: str, delete: bool, as_json: bool) -> None:
    """Point TAG at the version REF names (moves it if it exists)."""
    c = client()
    if delete:
        c.delete_tag(ref, tag)
        emit({"deleted": tag, "adapter": ref}, f"deleted tag {tag}")
        return
    out = c.set_tag(ref, tag)
    emit(out, f"{tag} -> {ref}")


COMMANDS = [push, pull, ls, show, tag]
