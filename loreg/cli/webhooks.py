"""``loreg webhook create / ls / test / deliveries / delete``: a namespace's webhooks."""

from __future__ import annotations

import click

from loreg.cli.common import client, emit, info, json_option, table, when
from loreg.cli.hints import FORBIDDEN, NOT_FOUND, hinted
from loreg.errors import LoregError

#: Mirrors loreg.services.events.EVENT_TYPES (the server checks; this only helps typing).
EVENTS = ["version.created", "version.validated", "tag.moved", "job.succeeded", "job.failed"]


def _hints(namespace: str) -> dict[int, str]:
    return {
        NOT_FOUND: f"check the namespace and the id with 'loreg webhook ls {namespace}'",
        FORBIDDEN: "webhooks need the namespace's admin role and an admin-scoped token",
    }


class WebhookTestFailed(LoregError):
    """The test delivery did not get a 2xx answer (exit 1; the delivery is the details)."""

    code = "webhook_test_failed"


@click.group()
def webhook() -> None:
    """Webhooks: signed HTTP POSTs to your URL when versions, tags or jobs change."""


@webhook.command("create")
@click.argument("namespace")
@click.argument("url")
@click.option(
    "--event",
    "events",
    multiple=True,
    type=click.Choice(EVENTS),
    help="Event to send; repeatable (default: all).",
)
@click.option("--secret", help="Signing secret, 16+ printable characters (default: generated).")
@click.option("--description")
@click.option("--inactive", is_flag=True, help="Create it switched off.")
@json_option
def create(
    namespace: str,
    url: str,
    events: tuple[str, ...],
    secret: str | None,
    description: str | None,
    inactive: bool,
    as_json: bool,
) -> None:
    """Create a webhook on NAMESPACE; prints its signing secret once."""
    with hinted(_hints(namespace)):
        out = client().create_webhook(
            namespace,
            url,
            events=list(events) or None,
            secret=secret,
            description=description,
            active=not inactive,
        )

    def human() -> None:
        click.echo(f"webhook {out.id} on {namespace} -> {out.url}")
        click.echo(f"secret: {out.secret}")
        info(
            "store the secret now: it is not shown again "
            "(receivers check X-Loreg-Signature with it)"
        )

    emit(out, human)


@webhook.command("ls")
@click.argument("namespace")
@json_option
def ls(namespace: str, as_json: bool) -> None:
    """List NAMESPACE's webhooks."""
    with hinted(_hints(namespace)):
        items = client().list_webhooks(namespace)
    emit(
        items,
        lambda: table(
            [
                [h.id, h.url, ",".join(h.events), "yes" if h.active else "no", h.description]
                for h in items
            ],
            ["ID", "URL", "EVENTS", "ACTIVE", "DESCRIPTION"],
        ),
    )


@webhook.command("test")
@click.argument("namespace")
@click.argument("webhook_id", metavar="ID", type=click.IntRange(min=1))
@json_option
def test(namespace: str, webhook_id: int, as_json: bool) -> None:
    """Send a signed 'ping' now; exit 1 when the receiver did not answer 2xx."""
    with hinted(_hints(namespace)):
        d = client().test_webhook(namespace, webhook_id)
    if d.status != "delivered":
        why = f"HTTP {d.last_status_code}" if d.last_status_code else d.last_error or d.status
        raise WebhookTestFailed(
            f"the receiver did not accept the ping ({why}); check that the URL is reachable "
            f"from the registry, then 'loreg webhook deliveries {namespace} {webhook_id}'",
            details=d.to_dict(),
        )
    emit(d, f"delivered: HTTP {d.last_status_code} (delivery {d.id})")


@webhook.command("deliveries")
@click.argument("namespace")
@click.argument("webhook_id", metavar="ID", type=click.IntRange(min=1))
@click.option("--status", type=click.Choice(["pending", "delivered", "failed"]))
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@json_option
def deliveries(
    namespace: str, webhook_id: int, status: str | None, limit: int, as_json: bool
) -> None:
    """The delivery log of one webhook, newest first."""
    with hinted(_hints(namespace)):
        items = client().list_deliveries(namespace, webhook_id, status=status, limit=limit)
    emit(
        items,
        lambda: table(
            [
                [
                    d.id,
                    d.event_type,
                    d.status,
                    d.attempts,
                    d.last_status_code or "",
                    when(d.created_at),
                    (d.last_error or "")[:60],
                ]
                for d in items
            ],
            ["ID", "EVENT", "STATUS", "ATTEMPTS", "HTTP", "CREATED", "ERROR"],
        ),
    )


@webhook.command("delete")
@click.argument("namespace")
@click.argument("webhook_id", metavar="ID", type=click.IntRange(min=1))
@json_option
def delete(namespace: str, webhook_id: int, as_json: bool) -> None:
    """Delete a webhook (its pending deliveries are dropped)."""
    with hinted(_hints(namespace)):
        client().delete_webhook(namespace, webhook_id)
    emit(
        {"deleted": webhook_id, "namespace": namespace},
        f"deleted webhook {webhook_id} of {namespace}",
    )


COMMANDS = [webhook]
