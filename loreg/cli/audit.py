"""``loreg audit``: who changed what, when (site administrators)."""

from __future__ import annotations

import json
from datetime import datetime

import click

from loreg.cli.common import client, emit, json_option, table, when
from loreg.cli.hints import FORBIDDEN, hinted


def _when(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An ISO 8601 time, checked here so a typo is a usage error, not a server round trip."""
    if value is None:
        return None
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: expected an ISO 8601 time such as 2026-01-31 or 2026-01-31T12:00:00+00:00"
        ) from None
    return value


@click.command()
@click.option("--actor", help="Only events by this user.")
@click.option("--action", help="Exact action (version.push), or a prefix as 'org.*'.")
@click.option("--target-type", help="adapter, version, tag, org, user, token, base, job ...")
@click.option("--target", help="Exact target, e.g. acme/bot@3.")
@click.option("--since", callback=_when, help="Events at or after this time (ISO 8601).")
@click.option("--until", callback=_when, help="Events before this time (ISO 8601).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@json_option
def audit(
    actor: str | None,
    action: str | None,
    target_type: str | None,
    target: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List audit events, newest first (needs a site administrator's admin token)."""
    with hinted({FORBIDDEN: "the audit log is for site administrators (admin-scoped token)"}):
        items = client().audit_events(
            actor=actor,
            action=action,
            target_type=target_type,
            target=target,
            since=since,
            until=until,
            limit=limit,
        )
    emit(
        items,
        lambda: table(
            [
                [
                    when(e.at),
                    e.actor or "",
                    e.action,
                    e.target,
                    json.dumps(e.details, separators=(",", ":")) if e.details else "",
                ]
                for e in items
            ],
            ["AT", "ACTOR", "ACTION", "TARGET", "DETAILS"],
        ),
    )


COMMANDS = [audit]
