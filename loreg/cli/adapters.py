"""``loreg push / pull / ls / show / tag``: adapters and their versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
)
from loreg.cli.hints import FORBIDDEN, NOT_FOUND, hinted
from loreg.cli.versions import adapter_name
from loreg.units import format_bytes


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
              help="Visibility of a new adapter (default private). An existing adapter keeps "
              "its own: a conflicting flag is refused; see 'loreg adapter set'.")
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
        compat = v.get("compatibility")
        if isinstance(compat, dict) and compat.get("match"):
            click.echo(f"base {v.get('base')}, match: {base_match_text(compat)}")
        info(f"uploaded {result.uploaded_files} file(s), {format_bytes(result.uploaded_bytes)} "
             f"of {format_bytes(result.total_bytes)}")

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
        click.echo(str(result.path.absolute()))
        info(f"{len(result.files)} file(s): {format_bytes(result.downloaded_bytes)} downloaded, "
             f"{format_bytes(result.cached_bytes)} from the cache")

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
    emit(v, lambda: show_version(v))


def show_version(v: dict[str, Any]) -> None:
    """What a version is, as text: what PEFT needs to load it, then where it came from."""
    base: dict[str, Any] = v["base_model"] if isinstance(v.get("base_model"), dict) else {}
    base_name = v.get("base") or base.get("name")
    fingerprint = base.get("fingerprint")
    compat: dict[str, Any] = (v["compatibility"] if isinstance(v.get("compatibility"), dict)
                              else {})
    config: dict[str, Any] = (v["adapter_config"] if isinstance(v.get("adapter_config"), dict)
                              else {})
    peft_type = v.get("peft_type")
    if peft_type and v.get("task_type"):
        peft_type = f"{peft_type} (task {v['task_type']})"
    rows: list[tuple[str, Any]] = [
        ("version", version_ref(v)), ("digest", v.get("digest")),
        ("base", f"{base_name} ({fingerprint})" if fingerprint else base_name),
    ]
    if compat.get("match"):
        rows.append(("base match", base_match_text(compat)))
    if v.get("description"):
        rows.append(("description", v["description"]))
    rows += [
        ("peft type", peft_type),
        ("rank", v.get("r")), ("alpha", v.get("lora_alpha")),
        ("rank pattern", v.get("rank_pattern") or {}),
        ("alpha pattern", v.get("alpha_pattern") or {}),
        ("rsLoRA", bool(v.get("use_rslora"))), ("DoRA", bool(v.get("use_dora"))),
        ("targets", v.get("target_modules")),
        ("modules to save", v.get("modules_to_save") or []),
        ("target params", config.get("target_parameters")),
        ("token ids", config.get("trainable_token_indices") or config.get("token_indices")),
    ]
    if v.get("fan_in_fan_out"):
        rows.append(("fan_in_fan_out", True))
    rows += [
        ("dtype", v.get("dtype")),
        ("parameters", f"{v['num_parameters']:,}" if isinstance(v.get("num_parameters"), int)
         else v.get("num_parameters")),
        ("size", format_bytes(v.get("size_bytes"))),
        ("validation", v.get("validation_state") or v.get("state")),
        ("tags", v.get("tags") or []),
        ("labels", v.get("labels") or {}),
    ]
    for parent in v.get("lineage") or []:
        rows.append(("parent", f"{parent.get('parent')} (weight {as_text(parent.get('weight'))},"
                               f" {parent.get('method')})"))
    rows.append(("created", f"{v.get('created_at')}"
                            + (f" by {v['created_by']}" if v.get("created_by") else "")))
    fields([(k, val) for k, val in rows if val is not None])
    files = v.get("files") or []
    if files:
        click.echo("files:")
        width = max(len(f["path"]) for f in files)
        for f in files:
            click.echo(f"  {f['path']:<{width}}  {format_bytes(f.get('size')):>9}  {f['digest']}")


def base_match_text(compat: dict[str, Any]) -> str:
    """``exact`` / ``structural`` / ``unverified``, with what would make it exact."""
    match = str(compat.get("match"))
    hint = compat.get("match_hint")
    return f"{match} ({hint})" if hint else match


@click.command()
@click.argument("ref", metavar="REF")
@click.argument("tag", required=False)
@click.option("--delete", is_flag=True,
              help="Remove the tag instead: 'loreg tag ns/name:TAG --delete'.")
@click.option("--protect/--unprotect", "protect", default=None,
              help="Protect the tag (only namespace admins may then move or delete it), "
              "or lift that.")
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
        with hinted({NOT_FOUND: f"list the tags with 'loreg tags {ns_name}'",
                     FORBIDDEN: "the tag is protected: ask a namespace admin"}):
            c.delete_tag(ns_name, tag_name)
        emit({"deleted": tag_name, "adapter": ns_name}, f"deleted tag {ns_name}:{tag_name}")
        return
    if tag is None:
        raise click.UsageError("give the TAG to set: loreg tag REF TAG "
                               "(or remove one: loreg tag ns/name:TAG --delete)")
    with hinted({FORBIDDEN: "the tag is protected, or protecting needs a namespace admin"}):
        out = c.set_tag(ref, tag, protected=protect)
    lock = " (protected)" if out.get("protected") else ""
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
        latest = a.get("latest") or {}
        click.echo(f"adapter:     {a['namespace']}/{a['name']}")
        click.echo(f"visibility:  {a.get('visibility')}")
        if a.get("description"):
            click.echo(f"description: {a['description']}")
        click.echo(f"versions:    {a.get('versions_count')} (latest: {latest.get('number', '-')})")
        tags = a.get("tags") or {}
        if tags:
            click.echo("tags:        " + ", ".join(f"{k} -> {v}" for k, v in sorted(tags.items())))

    emit(a, human)


@adapter.command("set")
@click.argument("name", metavar="NS/NAME")
@click.option("--public/--private", "public", default=None,
              help="Make every version readable by anyone, or by members only "
              "(needs the namespace's admin role).")
@click.option("--description", help="Replace the description.")
@json_option
def adapter_set(name: str, public: bool | None, description: str | None, as_json: bool) -> None:
    """Change an adapter's visibility or description (applies to all its versions)."""
    if public is None and description is None:
        raise click.UsageError("nothing to change: give --public, --private or --description")
    with hinted({NOT_FOUND: "check the name with 'loreg ls'",
                 FORBIDDEN: "changing visibility needs the namespace's admin role"}):
        a = client().update_adapter(adapter_name(name), public=public, description=description)
    emit(a, f"{a['namespace']}/{a['name']} is {a.get('visibility')}")


COMMANDS = [push, pull, ls, show, tag, adapter]
