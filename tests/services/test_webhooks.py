"""Webhooks CRUD: who may manage them, and which URLs and event types are refused."""

from __future__ import annotations

import functools

import pytest
from sqlalchemy.orm import Session, sessionmaker

from loreg.errors import InvalidInput, PermissionDenied
from loreg.services import webhooks
from tests.fixtures.webhooks import LOOPBACK, Receiver, WebhookWorld

#: The receiver listens on loopback: these tests run as an operator who allows it.
create = functools.partial(webhooks.create, policy=LOOPBACK)


def test_only_namespace_admins_manage_webhooks(
    maker: sessionmaker[Session], webhook_world: WebhookWorld, receiver: Receiver
) -> None:
    with maker() as s:
        with pytest.raises(PermissionDenied):
            create(s, webhook_world.writer, webhook_world.org, url=receiver.url)
        with pytest.raises(PermissionDenied):
            webhooks.list_webhooks(s, webhook_world.writer, webhook_world.org)
        hook, _ = create(s, webhook_world.admin, webhook_world.org, url=receiver.url)
        with pytest.raises(PermissionDenied):
            webhooks.delete(s, webhook_world.writer, webhook_world.org, hook.id)
        webhooks.delete(s, webhook_world.admin, webhook_world.org, hook.id)
        assert webhooks.list_webhooks(s, webhook_world.admin, webhook_world.org) == []


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x/y",
        "not a url",
        "http://user:pw@host/x",
        "/relative",
        "http://[::1",
        "http://host:99999/",
        "http://ho st/",
        "http://x/\x00",
    ],
)
def test_bad_urls_refused(
    maker: sessionmaker[Session], webhook_world: WebhookWorld, url: str
) -> None:
    with maker() as s, pytest.raises(InvalidInput):
        create(s, webhook_world.admin, webhook_world.org, url=url)


def test_bad_events_refused(maker: sessionmaker[Session], webhook_world: WebhookWorld) -> None:
    with maker() as s, pytest.raises(InvalidInput):
        create(s, webhook_world.admin, webhook_world.org, url="http://x/y", events_=["nope"])
