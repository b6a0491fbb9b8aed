"""``loreg webhook`` through the real binary, against a receiver on loopback."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator

import pytest

from tests.cli.harness import LoregEnv, one_line_error
from tests.fixtures.webhooks import LOOPBACK_NETWORKS, Receiver


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoregEnv]:
    """An embedded registry whose operator allows webhooks to loopback (the test receiver)."""
    env = LoregEnv(
        home=tmp_path_factory.mktemp("registry") / "home",
        extra={"LOREG_WEBHOOK_ALLOW_NETWORKS": LOOPBACK_NETWORKS},
    )
    env.start_server()
    yield env
    env.stop_all()


def test_webhook_lifecycle(embedded: LoregEnv, receiver: Receiver) -> None:
    r = embedded
    made = r.json(
        "webhook",
        "create",
        "admin",
        receiver.url,
        "--event",
        "version.created",
        "--event",
        "tag.moved",
        "--description",
        "ci",
    )
    hook_id, secret = made["id"], made["secret"]
    assert made["events"] == ["tag.moved", "version.created"] and len(secret) >= 16
    human = r.run("webhook", "create", "admin", receiver.url, "--secret", "s" * 20)
    assert "secret: " + "s" * 20 in human.stdout and "store the secret now" in human.stderr

    listed = r.json("webhook", "ls", "admin")
    assert [h["id"] for h in listed][:1] == [hook_id] and len(listed) == 2
    assert "version.created" in r.run("webhook", "ls", "admin").stdout

    # test: a signed ping reaches the receiver
    delivered = r.json("webhook", "test", "admin", str(hook_id))
    assert delivered["status"] == "delivered" and delivered["last_status_code"] == 200
    headers, body = receiver.requests[-1]
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert expected in headers["x-loreg-signature"]
    assert r.run("webhook", "test", "admin", str(hook_id)).stdout.startswith("delivered: HTTP 200")

    # a receiver that fails: exit 1, one line that says what to check, the delivery in --json
    receiver.statuses.extend([500, 500])
    failed = r.run("webhook", "test", "admin", str(hook_id), check=1)
    one_line_error(failed, "HTTP 500", "loreg webhook deliveries admin")
    failed_json = r.run("webhook", "test", "admin", str(hook_id), "--json", check=1).json
    assert failed_json["error"]["code"] == "webhook_test_failed"
    assert failed_json["error"]["details"]["last_status_code"] == 500

    log = r.json("webhook", "deliveries", "admin", str(hook_id))
    assert len(log) == 4 and {d["event_type"] for d in log} == {"ping"}
    assert [d["status"] for d in log][-2:] == ["delivered", "delivered"]
    assert "ping" in r.run("webhook", "deliveries", "admin", str(hook_id)).stdout
    only_ok = r.json("webhook", "deliveries", "admin", str(hook_id), "--status", "delivered")
    assert len(only_ok) == 2

    assert r.json("webhook", "delete", "admin", str(hook_id)) == {
        "deleted": hook_id,
        "namespace": "admin",
    }
    assert [h["id"] for h in r.json("webhook", "ls", "admin")] != [hook_id]

    # bad input: exit codes per the contract, one-line errors that say what to do
    one_line_error(
        r.run("webhook", "test", "admin", str(hook_id), check=1), "loreg webhook ls admin"
    )
    r.run("webhook", "delete", "admin", "0", check=2)
    r.run("webhook", "create", "admin", receiver.url, "--event", "nope", check=2)
    bad_url = r.run("webhook", "create", "admin", "ftp://x", check=1)
    one_line_error(bad_url, "http://")
    one_line_error(r.run("webhook", "ls", "nobody-here", check=1), "loreg webhook ls")
