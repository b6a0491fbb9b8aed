"""``loreg push / pull / ls / show / tag``: adapters and their versions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from loreg.cli.common import (
    as_text,
    client,
    emit,
    fields,
    info,
    json_option,
    progress_factory,
    table,
    when,
)
from loreg.cli.hints import FORBIDDEN, NOT_FOUND, hinted
from loreg.cli.versions import adapter_name
from loreg.units import format_bytes

if TYPE_CHECKING:
    from loreg.client.models import Compatibility, Version


def _labels(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--label")
        out[key] = value
    return out


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("target", metavar="NS/NAME[:TAG]")
@click.option("--base", help="The registered base model it was trained on.")
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="KEY=VALUE",
    help="Free-form label (dataset, run, metric); repeatable.",
)
@click.option("--tag", "tags", multiple=True, help="Another tag to set; repeatable.")
@click.option("--description")
@click.option(
    "--public/--private",
    "public",
    default=None,
    help="Visibility of a new adapter (default private). An existing adapter keeps "
    "its own: a conflicting flag is refused; see 'loreg adapter set'.",
)
@json_option
def push(
    folder: Path,
    target: str,
    base: str | None,
    labels: tuple[str, ...],
    tags: tuple[str, ...],
    description: str | None,
    public: bool | None,
    as_json: bool,
) -> None:
    """Push a PEFT adapter folder as a new version (uploads only what the registry lacks)."""
    result = client().push(
        folder,
        target,
        base=base,
        tags=tags,
        labels=_labels(labels),
        description=description,
        public=public,
        progress=progress_factory(),
    )
    v = result.version

    def human() -> None:
        click.echo(f"pushed {v.ref}  {v.digest}")
        if v.compatibility is not None and v.compatibility.match:
            click.echo(f"base {v.base}, match: {base_match_text(v.compatibility)}")
        info(
            f"uploaded {result.uploaded_files} file(s), {format_bytes(result.uploaded_bytes)} "
            f"of {format_bytes(result.total_bytes)}"
        )

    emit(result, human)


@click.command()
@click.argument("ref", metavar="REF")
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="Target folder (default: ./NAME)."
)
@click.option("--force", is_flag=True, help="Replace the target folder if it holds files.")
@json_option
def pull(ref: str, output: Path | None, force: bool, as_json: bool) -> None:
    """Download a version (ns/name, :tag, @N or @sha256:...) into a folder, atomically."""
    result = client().pull(ref, output, force=force, progress=progress_factory())

    def human() -> None:
        click.echo(str(result.path.absolute()))
        info(
            f"{len(result.files)} file(s): {format_bytes(result.downloaded_bytes)} downloaded, "
            f"{format_bytes(result.cached_bytes)} from the cache"
        )

    emit(result, human)


@click.command("ls")
@click.argument("namespace", required=False)
@click.option("--base", help="Only adapters on this base model.")
@click.option("--target", help="Only adapters targeting this module (e.g. q_proj).")
@click.option(
    "--label", "label", multiple=True, help="Only adapters with this label (KEY=VALUE); repeatable."
)
@click.option("--rank-min", type=int)
@click.option("--rank-max", type=int)
@click.option("--search", "text", help="Text in the name or description.")
@click.option("--limit", type=click.IntRange(min=1), default=None)
@json_option
def ls(
    namespace: str | None,
    base: str | None,
    target: str | None,
    label: tuple[str, ...],
    rank_min: int | None,
    rank_max: int | None,
    text: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """List and search adapters."""
    items = list(
        client().search(
            namespace,
            base=base,
            target=target,
            rank_min=rank_min,
            rank_max=rank_max,
            label=list(label) or None,
            text=text,
            limit=limit,
        )
    )

    def human() -> None:
        rows = []
        for a in items:
            latest = a.latest
            rows.append(
                [
                    a.full_name,
                    latest.number if latest else a.versions_count,
                    a.base or (latest.base if latest else None) or "",
                    latest.r if latest else "",
                    "public" if a.public else "private",
                    when(a.updated_at or a.created_at),
                ]
            )
        table(rows, ["ADAPTER", "LATEST", "BASE", "RANK", "VISIBILITY", "UPDATED"])

    emit(items, human)


@click.command()
@click.argument("ref", metavar="REF")
@json_option
def show(ref: str, as_json: bool) -> None:
    """Show one version: what it is, its base, files, labels, validation state."""
    v = client().get_version(ref)
    emit(v, lambda: show_version(v))


def show_version(v: Version) -> None:
    """What a version is, as text: what PEFT needs to load it, then where it came from."""
    base_name = v.base or (v.base_model.name if v.base_model else None)
    fingerprint = v.base_model.fingerprint if v.base_model else None
    config = v.adapter_config
    peft_type = v.peft_type
    if peft_type and v.task_type:
        peft_type = f"{peft_type} (task {v.task_type})"
    rows: list[tuple[str, Any]] = [
        ("version", v.ref),
        ("digest", v.digest),
        ("base", f"{base_name} ({fingerprint})" if fingerprint else base_name),
    ]
    if v.compatibility is not None and v.compatibility.match:
        rows.append(("base match", base_match_text(v.compatibility)))
    if v.description:
        rows.append(("description", v.description))
    rows += [
        ("peft type", peft_type),
        ("rank", v.r),
        ("alpha", v.lora_alpha),
        ("rank pattern", v.rank_pattern),
        ("alpha pattern", v.alpha_pattern),
        ("rsLoRA", v.use_rslora),
        ("DoRA", v.use_dora),
        ("targets", v.target_modules),
        ("modules to save", v.modules_to_save or []),
        ("target params", config.get("target_parameters")),
        ("token ids", config.get("trainable_token_indices") or config.get("token_indices")),
    ]
    if v.fan_in_fan_out:
        rows.append(("fan_in_fan_out", True))
    rows += [
        ("dtype", v.dtype),
        ("parameters", f"{v.num_parameters:,}" if v.num_parameters is not None else None),
        ("size", format_bytes(v.size_bytes)),
        ("validation", v.validation_state),
        ("tags", v.tags),
        ("labels", v.labels),
    ]
    for parent in v.lineage:
        rows.append(
            ("parent", f"{parent.parent} (weight {as_text(parent.weight)}, {parent.method})")
        )
    rows.append(("created", when(v.created_at) + (f" by {v.created_by}" if v.created_by else "")))
    fields([(k, val) for k, val in rows if val is not None])
    if v.files:
        click.echo("files:")
        width = max(len(f.path) for f in v.files)
        for f in v.files:
            click.echo(f"  {f.path:<{width}}  {format_bytes(f.size):>9}  {f.digest}")


def base_match_text(compat: Compatibility) -> str:
    """``exact`` / ``structural`` / ``unverified``, with what would make it exact."""
    match = str(compat.match)
    return f"{match} ({compat.match_hint})" if compat.match_hint else match


@click.command()
@click.argument("ref", metavar="REF")
@click.argument("tag", required=False)
@click.option(
    "--delete", is_flag=True, help="Remove the tag instead: 'loreg tag ns/name:TAG --delete'."
)
@click.option(
    "--protect/--unprotect",
    "protect",
    default=None,
    help="Protect the tag (only namespace admins may then move or delete it), or lift that.",
)
@json_option
def tag(ref: str, tag: str | None, delete: bool, protect: bool | None, as_json: bool) -> None:
    """Point TAG at the version REF names (moves it if it exists).

    \b
    loreg tag acme/bot@7 prod               # prod -> version 7
    loreg tag acme/bot@7 prod --protect     # ... and only admins may move it
    loreg tag acme/bot:prod --delete        # remove the tag
    """
    c = client()
    if delete:
        if protect is not None:
            raise click.UsageError("--delete takes no --protect/--unprotect")
        ns_name, tag_name = _tag_to_delete(ref, tag)
        with hinted(
            {
                NOT_FOUND: f"list the tags with 'loreg tags {ns_name}'",
                FORBIDDEN: "the tag is protected: ask a namespace admin",
            }
        ):
            c.delete_tag(ns_name, tag_name)
        emit({"deleted": tag_name, "adapter": ns_name}, f"deleted tag {ns_name}:{tag_name}")
        return
    if tag is None:
        raise click.UsageError(
            "give the TAG to set: loreg tag REF TAG (or remove one: loreg tag ns/name:TAG --delete)"
        )
    with hinted({FORBIDDEN: "the tag is protected, or protecting needs a namespace admin"}):
        out = c.set_tag(ref, tag, protected=protect)
    lock = " (protected)" if out.protected else ""
    emit(out, f"{tag} -> {ref}{lock}")


def _tag_to_delete(ref: str, tag: str | None) -> tuple[str, str]:
    """``(ns/name, tag)`` from ``ns/name:TAG`` or ``REF TAG``."""
    from loreg.client import split_ref

    ns, name, kind, value = split_ref(ref)
    if tag is not None:
        return f"{ns}/{name}", tag
    if kind != "tag" or ":" not in ref:
        raise click.UsageError(f"name the tag to delete: loreg tag {ns}/{name}:TAG --delete")
    return f"{ns}/{name}", value


@click.group()
def adapter() -> None:
    """An adapter as a whole: show it, change its visibility or description."""


@adapter.command("show")
@click.argument("name", metavar="NS/NAME")
@json_option
def adapter_show(name: str, as_json: bool) -> None:
    """Show an adapter: visibility, description, versions, tags."""
    with hinted({NOT_FOUND: "check the name with 'loreg ls'"}):
        a = client().get_adapter(adapter_name(name))

    def human() -> None:
        latest = a.latest.number if a.latest else "-"
        click.echo(f"adapter:     {a.full_name}")
        click.echo(f"visibility:  {a.visibility}")
        if a.description:
            click.echo(f"description: {a.description}")
        click.echo(f"versions:    {a.versions_count} (latest: {latest})")
        if a.tags:
            tags = ", ".join(f"{k} -> {v}" for k, v in sorted(a.tags.items()))
            click.echo(f"tags:        {tags}")

    emit(a, human)


@adapter.command("set")
@click.argument("name", metavar="NS/NAME")
@click.option(
    "--public/--private",
    "public",
    default=None,
    help="Make every version readable by anyone, or by members only "
    "(needs the namespace's admin role).",
)
@click.option("--description", help="Replace the description.")
@json_option
def adapter_set(name: str, public: bool | None, description: str | None, as_json: bool) -> None:
    """Change an adapter's visibility or description (applies to all its versions)."""
    if public is None and description is None:
        raise click.UsageError("nothing to change: give --public, --private or --description")
    with hinted(
        {
            NOT_FOUND: "check the name with 'loreg ls'",
            FORBIDDEN: "changing visibility needs the namespace's admin role",
        }
    ):
        a = client().update_adapter(adapter_name(name), public=public, description=description)
    emit(a, f"{a.full_name} is {a.visibility}")


COMMANDS = [push, pull, ls, show, tag, adapter]
