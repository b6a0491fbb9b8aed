"""Webhooks over HTTP: namespace admins manage them; a test delivery is signed and logged."""

from __future__ import annotations

import json

from loreg.services.webhooks import verify_signature
from tests.fixtures.api import RegistryServer
from tests.fixtures.webhooks import Receiver


def test_webhook_lifecycle_and_test_delivery(
    registry_server: RegistryServer, receiver: Receiver
) -> None:
    owner = registry_server.make_user(scope="admin")  # administering needs an admin token
    org = registry_server.make_org(owner)
    writer = registry_server.make_user()
    registry_server.add_member(org, writer, "write")
    admin = registry_server.client(owner.token)
    base = f"/namespaces/{org}/webhooks"

    r = admin.post(base, json={"url": receiver.url, "events": ["version.created", "tag.moved"],
                               "description": "CI"})
    assert r.status_code == 201, r.text
    hook = r.json()
    assert hook["secret"].startswith("whsec_") and hook["events"] == ["tag.moved",
                                                                      "version.created"]
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
        400, 422)
    assert admin.get(f"/namespaces/no-such-ns-{org}/webhooks").status_code == 404
    assert admin.get("/namespaces/Bad%00Name/webhooks").status_code == 400
    assert admin.post(base, json={"url": "http://[::1"}).status_code == 400
    assert admin.get(f"{base}/99999999999").status_code == 404
    assert registry_server.client(None).get(base).status_code == 401

    assert admin.delete(f"{base}/{hook['id']}").status_code == 204
    assert admin.get(f"{base}/{hook['id']}").status_code == 404
