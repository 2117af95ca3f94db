"""The administration actions check the permission themselves, whoever calls them: a role without it is refused
before anything is done, and the refusal is recorded as `access.denied` (the doors check first too; this is the
action's own check, on a real home)."""

from __future__ import annotations

import pytest

from assistant.app import actions_admin
from assistant.app.services import Services, cli_user
from assistant.app.users import PermissionDenied
from ingest.settings import Settings


def test_an_admin_action_asked_by_a_role_without_the_permission_is_refused_and_recorded(tmp_path):
    services = Services(Settings(home=tmp_path))
    services.users.add("boss", "admin", "boss-pass-0001")
    services.users.add("ed", "editor", "ed-pass-0001")
    ed = services.users.get("ed")
    export = tmp_path / "trail.jsonl"
    with pytest.raises(PermissionDenied, match="needs the admin role"):
        actions_admin.add_user(services, ed, "mallory", "admin", "mallory-pass-0001")
    with pytest.raises(PermissionDenied):
        actions_admin.set_role(services, ed, "ed", "admin")
    with pytest.raises(PermissionDenied):
        actions_admin.export_audit(services, ed, export, "jsonl", context={"via": "test"})
    assert [(u.name, u.role) for u in services.users.list()] == [("boss", "admin"), ("ed", "editor")]
    assert not export.exists()
    assert [(r["action"], r["user"], r["permission"], r["role"], r.get("via")) for r in services.audit.records()] == [
        ("access.denied", "ed", "users", "editor", None), ("access.denied", "ed", "users", "editor", None),
        ("access.denied", "ed", "audit.export", "editor", "test")]


def test_the_cli_user_may_and_is_recorded_by_its_own_name(tmp_path):
    services = Services(Settings(home=tmp_path))
    given = actions_admin.add_user(services, cli_user("cli:ops"), "alice", "viewer")
    assert services.users.get("alice").role == "viewer" and len(given) >= 16
    records = actions_admin.export_audit(services, cli_user("cli:ops"), tmp_path / "trail.csv", "csv")
    assert records == 1 and (tmp_path / "trail.csv").exists()
    assert [(r["user"], r["action"]) for r in services.audit.records()] == [("cli:ops", "user.add"),
                                                                             ("cli:ops", "audit.export")]
    assert "library" not in services.__dict__  # nothing of the library was opened for it
