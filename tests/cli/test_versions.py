"""``loreg versions / tags / delete / restore / tag / adapter`` through the real binary."""

from __future__ import annotations

import pytest

from tests.cli.harness import LoregEnv, one_line_error
from tests.factories.cli_models import Models


@pytest.fixture(scope="module")
def bot(embedded: LoregEnv, models: Models) -> str:
    """``admin/bot`` with versions 1 (tag prod) and 2 on a registered base."""
    r = embedded
    r.json("base", "register", str(models.base.path), "--name", "test/tiny-llama")
    r.json("push", str(models.adapter.path), "admin/bot:prod", "--base", "test/tiny-llama")
    r.json("push", str(models.adapter2.path), "admin/bot", "--base", "test/tiny-llama")
    return "admin/bot"


def test_versions_and_tags(embedded: LoregEnv, bot: str) -> None:
    r = embedded
    listed = r.json("versions", bot)
    assert [v["number"] for v in listed] == [2, 1]
    assert set(listed[1]["tags"]) == {"prod"} and "latest" in listed[0]["tags"]
    human = r.run("versions", bot).stdout
    assert human.splitlines()[0].split()[:3] == ["VERSION", "DIGEST", "RANK"]
    assert "prod" in human and "test/tiny-llama" in human
    tags = {t["name"]: t for t in r.json("tags", bot)}
    assert tags["prod"]["number"] == 1 and tags["latest"]["number"] == 2
    assert tags["latest"]["automatic"] is True
    assert "(automatic)" in r.run("tags", bot).stdout

    # bad input: a ref where a name is wanted is a usage error; a missing adapter says what to do
    usage = r.run("versions", "admin/bot@1", check=2)
    assert "without a tag or version" in usage.stderr
    missing = r.run("tags", "admin/nope", check=1)
    one_line_error(missing, "not found", "loreg ls")
    assert (
        r.run("versions", "admin/nope", "--json", check=1)
        .json["error"]["code"]
        .endswith("not_found")
    )


def test_delete_and_restore(embedded: LoregEnv, models: Models, bot: str) -> None:
    r = embedded
    r.json("push", str(models.adapter.path), "admin/del", "--base", "test/tiny-llama")
    r.json("push", str(models.adapter2.path), "admin/del", "--base", "test/tiny-llama")
    out = r.run("delete", "admin/del@2", "--reason", "bad data")
    assert "undo with: loreg restore admin/del@2" in out.stdout
    assert [v["number"] for v in r.json("versions", "admin/del")] == [1]
    shown = r.json("versions", "admin/del", "--deleted")
    assert shown[0]["number"] == 2 and shown[0]["delete_reason"] == "bad data"
    assert "deleted: bad data" in r.run("versions", "admin/del", "--deleted").stdout
    assert r.json("show", "admin/del")["number"] == 1  # latest fell back

    restored = r.json("restore", "admin/del@2")
    assert restored["number"] == 2 and restored["deleted_at"] is None
    assert r.json("show", "admin/del")["number"] == 2  # latest follows again

    # bad input, each a one-line error that says what to do, with the contract's exit code
    one_line_error(r.run("restore", "admin/del@2", check=1), "not deleted", "nothing to restore")
    one_line_error(r.run("restore", "admin/del@9", check=1), "loreg versions admin/del --deleted")
    one_line_error(r.run("restore", "admin/del:latest", check=1), "by number or digest")
    assert "names no version" in r.run("delete", "admin/del", "--reason", "x", check=2).stderr
    assert "give a reason" in r.run("delete", "admin/del@1", "--reason", " ", check=2).stderr
    r.run("delete", "admin/del@1", check=2)  # --reason is required
    err = r.run("delete", "admin/del@7", "--reason", "x", "--json", check=1).json["error"]
    assert "loreg versions admin/del" in err["message"]


def test_tags_protect_and_delete(embedded: LoregEnv, bot: str) -> None:
    r = embedded
    out = r.json("tag", "admin/bot@2", "stable", "--protect")
    assert out["protected"] is True and out["number"] == 2
    assert "(protected)" in r.run("tag", "admin/bot@1", "stable").stdout  # admin may move it
    assert r.json("tag", "admin/bot@1", "stable", "--unprotect")["protected"] is False

    # ns/name:TAG --delete works; so does REF TAG --delete
    assert r.json("tag", "admin/bot:stable", "--delete") == {
        "deleted": "stable",
        "adapter": "admin/bot",
    }
    r.json("tag", "admin/bot@1", "canary")
    assert r.run("tag", "admin/bot", "canary", "--delete").stdout.strip() == (
        "deleted tag admin/bot:canary"
    )
    assert {t["name"] for t in r.json("tags", bot)} == {"latest", "prod"}

    one_line_error(r.run("tag", "admin/bot:nope", "--delete", check=1), "loreg tags admin/bot")
    assert "name the tag to delete" in r.run("tag", "admin/bot@1", "--delete", check=2).stderr
    assert "give the TAG to set" in r.run("tag", "admin/bot@1", check=2).stderr
    assert "--protect" in r.run("tag", "admin/bot:prod", "--delete", "--protect", check=2).stderr


def test_protected_tag_needs_a_namespace_admin(
    embedded: LoregEnv, models: Models, bot: str
) -> None:
    """A writer of an organisation cannot move or delete a protected tag; the error says so."""
    r = embedded
    org = "team"
    r.json("org", "create", org)
    r.json("push", str(models.adapter.path), f"{org}/bot:prod", "--base", "test/tiny-llama")
    r.json("tag", f"{org}/bot@1", "prod", "--protect")
    user = r.json("user", "create", "wendy")
    token = user["token"]["token"]
    r.json("org", "add-member", org, "wendy", "--role", "write")
    as_wendy = r.env(LOREG_TOKEN=token, LOREG_URL=r.url)
    denied = r.run("tag", f"{org}/bot:prod", "--delete", env=as_wendy, check=1)
    one_line_error(denied, "ask a namespace admin")
    r.run("tag", f"{org}/bot@1", "canary", env=as_wendy)  # unprotected tags are fine


def test_adapter_visibility_and_description(embedded: LoregEnv, models: Models, bot: str) -> None:
    r = embedded
    shown = r.json("adapter", "show", bot)
    assert shown["visibility"] == "private" and shown["versions_count"] == 2
    out = r.json("adapter", "set", bot, "--public", "--description", "support bot")
    assert (out["visibility"], out["description"]) == ("public", "support bot")
    assert "visibility:  public" in r.run("adapter", "show", bot).stdout
    assert r.run("adapter", "set", bot, "--private").stdout.strip() == "admin/bot is private"

    # a push whose flag disagrees with the adapter is refused: nothing changes
    refused = r.run(
        "push",
        str(models.adapter.path),
        f"{bot}:x",
        "--base",
        "test/tiny-llama",
        "--public",
        check=1,
    )
    one_line_error(refused, "loreg adapter set admin/bot --public")
    assert r.json("adapter", "show", bot)["visibility"] == "private"
    assert "x" not in {t["name"] for t in r.json("tags", bot)}
    # the agreeing flag (or none) pushes as usual
    r.json("push", str(models.adapter.path), f"{bot}:x", "--base", "test/tiny-llama", "--private")

    assert "nothing to change" in r.run("adapter", "set", bot, check=2).stderr
    one_line_error(r.run("adapter", "show", "admin/nope", check=1), "loreg ls")
