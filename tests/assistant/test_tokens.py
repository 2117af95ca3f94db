"""API tokens: the store (hash only, expiry, revocation, a removed or changed user) and `comply users token`,
`tokens`, `revoke-token` through the real typer app, audited as the shell's user."""

import json
import os
import stat

from typer.testing import CliRunner

from assistant.app.audit import AuditLog
from assistant.app.cli.main import app
from assistant.app.tokens import PREFIX, TokenStore, token_hash
from assistant.app.users import UserStore
from ingest.settings import Settings


def comply(home, *args):
    return CliRunner().invoke(app, ["--home", str(home), *args])


def test_a_token_is_stored_only_as_its_hash_and_stops_with_its_user_or_role(tmp_path):
    settings = Settings(home=tmp_path)
    users, tokens = UserStore(settings.users_path), TokenStore(settings.tokens_path)
    users.add("alice", "editor", "alice-pass-01")
    token, secret = tokens.issue(users.get("alice"), "ci")
    assert secret.startswith(PREFIX) and len(secret) > 40
    assert stat.S_IMODE(os.stat(settings.tokens_path).st_mode) == 0o600
    assert secret.encode() not in settings.tokens_path.read_bytes()
    assert token_hash(secret).encode() in settings.tokens_path.read_bytes()

    found = tokens.find(secret)
    assert found.id == token.id and found.last_used and found.refusal(users.get("alice")) is None
    assert tokens.find(secret + "x") is None and tokens.find("not-a-token") is None

    users.set_role("alice", "viewer")
    assert "changed role" in tokens.find(secret).refusal(users.get("alice"))
    users.set_role("alice", "editor")  # back to the role it was issued for: still ended
    assert "password reset" in tokens.find(secret).refusal(users.get("alice"))

    token, secret = tokens.issue(users.get("alice"))
    users.set_password("alice", "alice-pass-02")
    assert "password reset" in tokens.find(secret).refusal(users.get("alice"))
    token, secret = tokens.issue(users.get("alice"))
    users.remove("alice")
    assert "no longer exists" in tokens.find(secret).refusal(users.get("alice"))
    users.add("alice", "editor", "alice-pass-03")  # another user under the same name (within the same second)
    assert tokens.find(secret).refusal(users.get("alice")) is not None


def test_expired_and_revoked_tokens_say_why(tmp_path):
    settings = Settings(home=tmp_path)
    users, tokens = UserStore(settings.users_path), TokenStore(settings.tokens_path)
    users.add("bob", "viewer", "bob-pass-0001")
    bob = users.get("bob")
    old, old_secret = tokens.issue(bob, expires_days=1e-9)  # expired by the time it is used
    assert "expired" in tokens.find(old_secret).refusal(bob)
    token, secret = tokens.issue(bob)
    tokens.revoke(token.id)
    assert "revoked" in tokens.find(secret).refusal(bob)


def test_token_commands_print_the_token_once_list_revoke_and_are_audited(tmp_path):
    UserStore(Settings(home=tmp_path).users_path).add("carol", "editor", "carol-pass-01")
    issued = comply(tmp_path, "users", "token", "carol", "--name", "intranet", "--expires", "30", "--json")
    assert issued.exit_code == 0, issued.output
    data = json.loads(issued.output)
    assert data["token"].startswith(PREFIX) and data["label"] == "intranet" and data["expires"]

    listed = comply(tmp_path, "users", "tokens", "carol", "--json")
    rows = json.loads(listed.output)
    assert [(r["id"], r["user"], r["label"], r["state"]) for r in rows] == [(data["id"], "carol", "intranet",
                                                                           "active")]
    assert data["token"] not in listed.output and data["token"] not in comply(tmp_path, "users", "tokens").output

    assert comply(tmp_path, "users", "revoke-token", str(data["id"])).exit_code == 0
    again = comply(tmp_path, "users", "revoke-token", str(data["id"]), "--json")
    assert again.exit_code == 1 and "already revoked" in json.loads(again.output)["error"]
    assert comply(tmp_path, "users", "revoke-token", "99").exit_code == 1
    assert comply(tmp_path, "users", "token", "nobody").exit_code == 1
    assert "revoked" in json.loads(comply(tmp_path, "users", "tokens", "--json").output)[0]["state"]

    records = AuditLog(Settings(home=tmp_path).audit_path).records()
    assert [r["action"] for r in records] == ["token.issue", "token.list", "token.list", "token.revoke",
                                              "token.list"]
    assert all(r["user"].startswith("cli:") for r in records)
    assert records[0]["token_id"] == data["id"] and records[3]["name"] == "carol"
    assert data["token"] not in Settings(home=tmp_path).audit_path.read_text()
