"""Accounts through the real ``loreg`` binary: a new user's token shown once, logins, errors
about credentials that say where they came from and what to run; users and orgs listed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.harness import LoregEnv, one_line_error


def test_user_create_prints_the_token_once_with_a_warning(embedded: LoregEnv) -> None:
    res = embedded.run("user", "create", "alice")
    token = res.stdout.strip()
    assert token.startswith("lrg_") and "\n" not in token  # stdout: the token alone
    assert "created user alice" in res.stderr
    assert "store it now" in res.stderr and "not shown again" in res.stderr
    assert f"loreg login {embedded.url} --token TOKEN" in res.stderr

    # it is alice's, and it works
    me = embedded.json("whoami", env=embedded.env(LOREG_TOKEN=token))
    assert me["user"] == "alice"
    # never shown again: alice's token list has no values
    listed = embedded.run("token", "ls", "--json", env=embedded.env(LOREG_TOKEN=token)).stdout
    assert token not in listed

    doc = embedded.json("user", "create", "bob")
    assert doc["token"]["token"].startswith("lrg_") and doc["user"]["name"] == "bob"


def test_login_takes_the_url_as_an_argument(embedded: LoregEnv, tmp_path: Path) -> None:
    token = embedded.run("user", "create", "carol").stdout.strip()
    home = tmp_path / "carol-home"
    env = LoregEnv(home=home)  # a fresh LOREG_HOME: no stored login
    res = env.run("login", embedded.url, "--token", token)
    assert f"logged in to {embedded.url} as carol" in res.stdout
    stored = json.loads((home / "credentials.json").read_text())
    assert stored == {"url": embedded.url, "token": token}
    assert env.json("whoami")["user"] == "carol"  # the stored login is used

    bad = one_line_error(env.run("login", embedded.url, "--token", "lrg_not-a-token", check=1))
    assert "does not accept this token" in bad and "loreg token create" in bad
    assert json.loads((home / "credentials.json").read_text())["token"] == token  # kept


def test_no_login_names_loreg_home_and_what_to_run(embedded: LoregEnv, tmp_path: Path) -> None:
    home = tmp_path / "nobody"
    env = LoregEnv(home=home, extra={"LOREG_URL": embedded.url})
    line = one_line_error(env.run("whoami", check=1))
    assert "not logged in" in line and "LOREG_TOKEN is unset" in line
    assert str(home / "credentials.json") in line and f"LOREG_HOME={home}" in line
    assert f"`loreg login {embedded.url}`" in line and "`loreg serve`" in line
    assert env.json("whoami", check=1)["error"]["code"] == "unauthenticated"

    # a stored login for another registry is not sent here, and the message says so
    home.mkdir(parents=True, exist_ok=True)
    (home / "credentials.json").write_text(
        json.dumps({"url": "http://registry.example:8080", "token": "lrg_elsewhere"})
    )
    line = one_line_error(env.run("whoami", check=1))
    assert "is for http://registry.example:8080" in line
    assert f"loreg login {embedded.url}" in line


def test_a_rejected_token_says_where_it_came_from(embedded: LoregEnv, tmp_path: Path) -> None:
    # from LOREG_TOKEN
    env = LoregEnv(
        home=tmp_path / "h1", extra={"LOREG_URL": embedded.url, "LOREG_TOKEN": "lrg_bogus"}
    )
    line = one_line_error(env.run("whoami", check=1))
    assert "the token in LOREG_TOKEN" in line and "invalid token" in line
    assert "unset it to use the stored login" in line

    # from the stored login: a token that was revoked
    token = embedded.run("token", "create", "short-lived").stdout.strip()
    token_id = next(t["id"] for t in embedded.json("token", "ls") if t["name"] == "short-lived")
    embedded.run("token", "revoke", str(token_id))
    home = tmp_path / "h2"
    home.mkdir()
    (home / "credentials.json").write_text(json.dumps({"url": embedded.url, "token": token}))
    line = one_line_error(LoregEnv(home=home).run("whoami", check=1))
    assert f"the token stored in {home / 'credentials.json'}" in line
    assert "revoked" in line and f"`loreg login {embedded.url}`" in line


@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}", "http://localhost:{port}"])
def test_an_unreachable_registry_names_the_url_and_its_source(tmp_path: Path, url: str) -> None:
    from tests.cli.harness import free_port

    target = url.format(port=free_port())
    env = LoregEnv(home=tmp_path / "home", extra={"LOREG_URL": target})
    line = one_line_error(env.run("ls", check=1))
    assert f"cannot reach the registry at {target} (from LOREG_URL)" in line
    assert "connection refused" in line and "`loreg serve`" in line and "loreg login URL" in line

    # no LOREG_URL: the stored login's URL, and the message says where it is stored
    home = tmp_path / "home2"
    home.mkdir()
    (home / "credentials.json").write_text(json.dumps({"url": target, "token": "lrg_x"}))
    line = one_line_error(LoregEnv(home=home).run("whoami", check=1))
    assert f"cannot reach the registry at {target} (stored in {home / 'credentials.json'})" in line


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
        {"user": "admin", "role": "admin"},
        {"user": "carl", "role": "write"},
        {"user": "dora", "role": "read"},
    ]
    assert r.run("org", "members", "lab").stdout.split()[:2] == ["USER", "ROLE"]

    assert r.json("org", "remove-member", "lab", "dora") == {"org": "lab", "removed": "dora"}
    assert [m["user"] for m in r.json("org", "members", "lab")] == ["admin", "carl"]

    # bad input and refusals: one line each, with what to do
    one_line_error(r.run("org", "remove-member", "lab", "dora", check=1), "loreg org members lab")
    one_line_error(r.run("org", "remove-member", "lab", "admin", check=1), "--role admin")
    one_line_error(r.run("org", "members", "nope", check=1), "loreg org ls")
    r.json("org", "create", "other")
    hidden = r.run("org", "members", "other", env=as_carl, check=1)
    one_line_error(hidden, "ask an admin of 'other'")
    assert (
        r.run("org", "members", "other", "--json", env=as_carl, check=1).json["error"]["code"]
        == "permission_denied"
    )
