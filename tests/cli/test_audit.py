"""``loreg audit`` through the real binary."""

from __future__ import annotations

from tests.cli.harness import LoregEnv, one_line_error


def test_audit_log(embedded: LoregEnv) -> None:
    r = embedded
    r.json("org", "create", "auditors")
    r.json("user", "create", "ann")
    events = r.json("audit")
    assert [e["action"] for e in events][:3] == ["token.create", "user.create", "org.create"]
    assert r.json("audit", "--action", "org.*")[0]["target"] == "auditors"
    assert [e["target"] for e in r.json("audit", "--target-type", "user", "--limit", "1")] == [
        "ann"
    ]
    assert r.json("audit", "--actor", "ann") == []
    assert r.json("audit", "--since", "2999-01-01") == []
    human = r.run("audit", "--limit", "2").stdout
    assert human.splitlines()[0].split() == ["AT", "ACTOR", "ACTION", "TARGET", "DETAILS"]
    assert "user.create" in human

    assert "ISO 8601" in r.run("audit", "--since", "yesterday", check=2).stderr
    r.run("audit", "--limit", "0", check=2)
    # a user who is not a site administrator
    token = r.json("user", "create", "bob")["token"]["token"]
    denied = r.run("audit", env=r.env(LOREG_TOKEN=token, LOREG_URL=r.url), check=1)
    one_line_error(denied, "site administrators")
