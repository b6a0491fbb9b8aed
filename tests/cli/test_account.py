"""``loreg user ls`` and ``loreg org ls / members / remove-member`` through the real binary."""

from __future__ import annotations

from tests.cli.harness import LoregEnv, one_line_error


def test_users_and_orgs(embedded: LoregEnv) -> None:
    r = embedded
    carl = r.json("user", "create", "carl")["token"]["token"]
    r.json("user", "create", "dora")
    as_carl = r.env(LOREG_TOKEN=carl, LOREG_URL=r.url)
    names = [u["name"] for u in r.json("user", "ls")]
    assert names == sorted(names) and {"admin", "carl", "dora"} <= set(names)
    assert "carl" in r.run("user", "ls").stdout
    one_line_error(r.run("user", "ls", env=as_carl, check=1), "site administrator")

    r.json("org", "create", "lab", "--description", "the lab")
    r.json("org", "add-member", "lab", "carl", "--role", "write")
    r.json("org", "add-member", "lab", "dora", "--role", "read")
    mine = {o["name"]: o["role"] for o in r.json("org", "ls", "--mine", env=as_carl)}
    assert mine == {"lab": "write"}
    assert "the lab" in r.run("org", "ls").stdout
    assert r.json("org", "members", "lab") == [
        {"user": "admin", "role": "admin"}, {"user": "carl", "role": "write"},
        {"user": "dora", "role": "read"}]
    assert r.run("org", "members", "lab").stdout.split()[:2] == ["USER", "ROLE"]

    assert r.json("org", "remove-member", "lab", "dora") == {"org": "lab", "removed": "dora"}
    assert [m["user"] for m in r.json("org", "members", "lab")] == ["admin", "carl"]

    # bad input and refusals: one line each, with what to do
    one_line_error(r.run("org", "remove-member", "lab", "dora", check=1),
                   "loreg org members lab")
    one_line_error(r.run("org", "remove-member", "lab", "admin", check=1),
                   "--role admin")
    one_line_error(r.run("org", "members", "nope", check=1), "loreg org ls")
    r.json("org", "create", "other")
    hidden = r.run("org", "members", "other", env=as_carl, check=1)
    one_line_error(hidden, "ask an admin of 'other'")
    assert r.run("org", "members", "other", "--json", env=as_carl,
                 check=1).json["error"]["code"] == "permission_denied"
