"""``loreg versions / tags / delete / restore``: an adapter's versions and tags."""

from __future__ import annotations

import click

from loreg.cli.common import client, emit, json_option, table, when
from loreg.cli.hints import CONFLICT, FORBIDDEN, NOT_FOUND, hinted


def adapter_name(value: str) -> str:
    """``ns/name`` of an adapter (a tag or version after it is a usage error)."""
    if "@" in value or ":" in value:
        raise click.BadParameter(
            f"{value!r}: name the adapter as ns/name, without a tag or version",
            param_hint="NS/NAME",
        )
    return value


def _short(digest: str) -> str:
    return digest[:19] if digest.startswith("sha256:") else digest


@click.command()
@click.argument("name", metavar="NS/NAME")
@click.option("--deleted", is_flag=True, help="Include deleted versions (with their reason).")
@json_option
def versions(name: str, deleted: bool, as_json: bool) -> None:
    """List an adapter's versions, newest first."""
    with hinted({NOT_FOUND: "check the name with 'loreg ls'"}):
        items = client().list_versions(adapter_name(name), include_deleted=deleted)

    def human() -> None:
        rows = []
        for v in items:
            row = [
                v.number,
                _short(v.digest),
                v.r,
                v.base or "",
                ",".join(v.tags),
                v.validation_state or "",
                when(v.created_at),
            ]
            if deleted:
                row.append(f"deleted: {v.delete_reason}" if v.deleted_at else "")
            rows.append(row)
        headers = ["VERSION", "DIGEST", "RANK", "BASE", "TAGS", "VALIDATION", "CREATED"]
        table(rows, headers + (["STATE"] if deleted else []))

    emit(items, human)


@click.command()
@click.argument("name", metavar="NS/NAME")
@json_option
def tags(name: str, as_json: bool) -> None:
    """List an adapter's tags and the versions they point at."""
    with hinted({NOT_FOUND: "check the name with 'loreg ls'"}):
        items = client().list_tags(adapter_name(name))
    emit(
        items,
        lambda: table(
            [
                [
                    t.name,
                    t.number,
                    _short(t.digest),
                    "yes" if t.protected else "",
                    when(t.updated_at),
                    t.updated_by or ("(automatic)" if t.automatic else ""),
                ]
                for t in items
            ],
            ["TAG", "VERSION", "DIGEST", "PROTECTED", "UPDATED", "BY"],
        ),
    )


def version_ref_arg(value: str) -> str:
    """A reference that names one version explicitly (``@N``, ``@sha256:..`` or ``:TAG``)."""
    if "@" not in value and ":" not in value:
        raise click.BadParameter(
            f"{value!r} names no version: give ns/name@N, ns/name@sha256:... or ns/name:TAG "
            "(see 'loreg versions ns/name')",
            param_hint="REF",
        )
    return value


def _adapter_of(ref: str) -> str:
    """``ns/name`` of a reference, for messages."""
    return ref.split("@", 1)[0].split(":", 1)[0]


@click.command()
@click.argument("ref", metavar="REF")
@click.option("--reason", required=True, help="Why (kept with the version and in the audit log).")
@json_option
def delete(ref: str, reason: str, as_json: bool) -> None:
    """Delete a version (soft: its number and digest stay reserved; 'loreg restore' undoes it).

    Its tags are removed and 'latest' falls back to the newest remaining version."""
    if not reason.strip():
        raise click.BadParameter(
            "give a reason, e.g. --reason 'trained on leaked data'", param_hint="--reason"
        )
    name = _adapter_of(version_ref_arg(ref))
    with hinted(
        {
            NOT_FOUND: f"list the live versions with 'loreg versions {name}'",
            FORBIDDEN: "a protected tag points at it: ask a namespace admin",
        }
    ):
        v = client().delete_version(version_ref_arg(ref), reason)
    emit(v, f"deleted {v.ref} ({reason}); undo with: loreg restore {v.ref}")


@click.command()
@click.argument("ref", metavar="NS/NAME@N")
@json_option
def restore(ref: str, as_json: bool) -> None:
    """Restore a deleted version (by number or digest). Tags it lost are not put back."""
    name = _adapter_of(version_ref_arg(ref))
    with hinted(
        {
            NOT_FOUND: f"list deleted versions with 'loreg versions {name} --deleted'",
            CONFLICT: "nothing to restore",
        }
    ):
        v = client().restore_version(version_ref_arg(ref))
    emit(v, f"restored {v.ref}")


COMMANDS = [versions, tags, delete, restore]
