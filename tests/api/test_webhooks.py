"""Webhooks over HTTP: namespace admins manage them; a test delivery is signed and logged;
receivers on internal addresses are refused (SSRF), redirects are not followed, and what a
receiver answers is never shown.

The module's server allows receivers on loopback (the operator setting), as a test must to
reach the loopback receiver; the SSRF tests run with the default (nothing allowed) or with
one loopback address allowed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from loreg.services.webhooks import verify_signature
from tests.fixtures.api import RegistryServer
from tests.fixtures.webhooks import LOOPBACK_NETWORKS, Receiver, run_receiver


@pytest.fixture
def registry_overrides() -> dict[str, Any]:
    return {"webhook_allow_networks": LOOPBACK_NETWORKS}


def _org_admin(registry_server: RegistryServer) -> tuple[Any, str]:
    owner = registry_server.make_user(scope="admin")  # administering needs an admin token
    org = registry_server.make_org(owner)
    return registry_server.client(owner.token), f"/namespaces/{org}/webhooks"


def test_webhook_lifecycle_and_test_delivery(
    registry_server: RegistryServer, receiver: Receiver
) -> None:
    owner = registry_server.make_user(scope="admin")  # administering needs an admin token
    org = registry_server.make_org(owner)
    writer = registry_server.make_user()
    registry_server.add_member(org, writer, "write")
    admin = registry_server.client(owner.token)
    base = f"/namespaces/{org}/webhooks"

    r = admin.post(
        base,
        json={"url": receiver.url, "events": ["version.created", "tag.moved"], "description": "CI"},
    )
    assert r.status_code == 201, r.text
    hook = r.json()
    assert hook["secret"].startswith("whsec_") and hook["events"] == [
        "tag.moved",
        "version.created",
    ]
    listed = admin.get(base).json()["webhooks"]
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]

    r = admin.post(f"{base}/{hook['id']}/test")
    assert r.status_code == 200, r.text
    delivery = r.json()
    assert delivery["status"] == "delivered" and delivery["attempts"] == 1
    assert delivery["event_type"] == "ping"
    [(headers, body)] = receiver.requests
    assert verify_signature(hook["secret"], body, headers["x-loreg-signature"])
    assert json.loads(body)["id"] == headers["x-loreg-event-id"] == delivery["event_id"]

    log = admin.get(f"{base}/{hook['id']}/deliveries").json()["deliveries"]
    assert [d["id"] for d in log] == [delivery["id"]]
    assert log[0]["attempt_log"][0]["status_code"] == 200

    r = admin.patch(f"{base}/{hook['id']}", json={"active": False})
    assert r.status_code == 200 and r.json()["active"] is False

    # writers are not namespace admins; outsiders neither; bad input is a 400/422
    with registry_server.client(writer.token) as w:
        assert w.get(base).status_code == 403
        assert w.post(base, json={"url": receiver.url}).status_code == 403
    assert admin.post(base, json={"url": "ftp://nope"}).status_code == 400
    assert admin.post(base, json={"url": receiver.url, "events": ["nope"]}).status_code in (
        400,
        422,
    )
    assert admin.get(f"/namespaces/no-such-ns-{org}/webhooks").status_code == 404
    assert admin.get("/namespaces/Bad%00Name/webhooks").status_code == 400
    assert admin.post(base, json={"url": "http://[::1"}).status_code == 400
    assert admin.get(f"{base}/99999999999").status_code == 404
    assert registry_server.client(None).get(base).status_code == 401

    assert admin.delete(f"{base}/{hook['id']}").status_code == 204
    assert admin.get(f"{base}/{hook['id']}").status_code == 404


@pytest.mark.parametrize("registry_overrides", [{}])  # the default: no network allowed
def test_receivers_on_internal_addresses_are_refused(
    registry_server: RegistryServer, receiver: Receiver
) -> None:
    admin, base = _org_admin(registry_server)
    port = receiver.url.split(":")[2].split("/")[0]
    internal = [
        receiver.url,  # 127.0.0.1
        f"http://[::1]:{port}/hook",
        f"http://0x7f000001:{port}/hook",  # hex spelling of 127.0.0.1
        f"http://2130706433:{port}/hook",  # decimal spelling
        f"http://0177.0.0.1:{port}/hook",  # octal spelling
        f"http://[::ffff:127.0.0.1]:{port}/hook",  # IPv4-mapped IPv6
        f"http://localhost:{port}/hook",  # a name resolving to loopback
        registry_server.api_url + "/whoami",  # loreg's own API
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
        "http://10.1.2.3/hook",
        "http://192.168.0.1/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
    ]
    for url in internal:
        r = admin.post(base, json={"url": url})
        assert r.status_code == 400, (url, r.text)
        assert r.json()["error"]["code"] == "destination_refused", (url, r.text)
        assert "LOREG_WEBHOOK_ALLOW_NETWORKS" in r.json()["error"]["message"]
    # a public address is accepted (nothing is sent: no event happens here) ...
    r = admin.post(base, json={"url": "http://93.184.216.34/hook"})
    assert r.status_code == 201, r.text
    # ... and cannot be changed to point inside either
    r = admin.patch(f"{base}/{r.json()['id']}", json={"url": f"http://0x7f000001:{port}/"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "destination_refused"
    assert receiver.requests == []


@pytest.mark.parametrize("registry_overrides", [{"webhook_allow_networks": "127.0.0.2/32"}])
def test_redirect_to_loopback_is_not_followed_and_bodies_stay_hidden(
    registry_server: RegistryServer, receiver: Receiver
) -> None:
    """The operator allows one on-premises receiver (127.0.0.2); it redirects to loopback
    (127.0.0.1, not allowed): loreg neither follows nor shows what the receiver answered."""
    admin, base = _org_admin(registry_server)
    with run_receiver(
        "127.0.0.2", statuses=[307], location=receiver.url, body=b"internal-secret-body"
    ) as on_prem:
        hook = admin.post(base, json={"url": on_prem.url})
        assert hook.status_code == 201, hook.text
        r = admin.post(f"{base}/{hook.json()['id']}/test")
        assert r.status_code == 200, r.text
        assert len(on_prem.requests) == 1
    delivery = r.json()
    assert delivery["status"] == "pending" and delivery["last_status_code"] == 307
    assert delivery["last_error"].startswith("HTTP 307: redirects are not followed")
    log = admin.get(f"{base}/{hook.json()['id']}/deliveries")
    for text in (r.text, log.text):
        assert "internal-secret-body" not in text
    assert receiver.requests == []  # the redirect target on 127.0.0.1 was never reached
    # the allowance is exact: the loopback receiver itself stays refused
    r = admin.post(base, json={"url": receiver.url})
    assert r.status_code == 400 and r.json()["error"]["code"] == "destination_refused"


def test_delivery_log_shows_status_codes_never_bodies(registry_server: RegistryServer) -> None:
    admin, base = _org_admin(registry_server)
    with run_receiver(statuses=[500], body=b"stack trace with db password hunter2") as rcv:
        hook = admin.post(base, json={"url": rcv.url}).json()
        r = admin.post(f"{base}/{hook['id']}/test")
    assert r.status_code == 200, r.text
    assert r.json()["last_status_code"] == 500 and r.json()["last_error"] == "HTTP 500"
    log = admin.get(f"{base}/{hook['id']}/deliveries")
    assert log.json()["deliveries"][0]["attempt_log"][0]["error"] == "HTTP 500"
    assert "hunter2" not in r.text + log.text
