"""Users and roles with the real SQLite store and real argon2 hashing."""

import sqlite3

import pytest

from assistant.app.users import (
    PERMISSIONS,
    ROLES,
    PermissionDenied,
    User,
    UserError,
    UserStore,
    allowed,
    require,
)


@pytest.fixture
def store(tmp_path):
    return UserStore(tmp_path / "users.sqlite3")


def test_add_list_get_set_role_remove(store):
    generated = store.add("alice", "editor")
    assert len(generated) >= 16
    assert store.add("bob", "viewer", "correct horse battery") == "correct horse battery"
    store.add("carol", "admin", "carol-password-1")
    assert [(u.name, u.role) for u in store.list()] == [("alice", "editor"), ("bob", "viewer"), ("carol", "admin")]
    assert store.get("ALICE").name == "alice"  # names ignore case
    assert store.get("nobody") is None

    store.set_role("bob", "editor")
    assert store.get("bob").role == "editor"
    store.remove("alice")
    assert store.get("alice") is None
    assert store.authenticate("alice", generated) is None


def test_bad_requests_are_user_errors(store):
    store.add("alice", "viewer", "a-long-password")
    for call in (lambda: store.add("Alice", "viewer"),  # duplicate, whatever the case
                 lambda: store.add("dave", "superuser"),
                 lambda: store.add("", "viewer"),
                 lambda: store.add("has space", "viewer"),
                 lambda: store.add("erin", "viewer", ""),
                 lambda: store.add("erin", "viewer", "short"),
                 lambda: store.add("frank1234", "viewer", "FRANK1234"),
                 lambda: store.remove("nobody"),
                 lambda: store.set_role("nobody", "admin"),
                 lambda: store.set_role("alice", "root")):
        with pytest.raises(UserError):
            call()


def test_the_last_admin_cannot_be_removed_or_demoted(store):
    store.add("root", "admin", "root-password-1")
    with pytest.raises(UserError, match="last admin"):
        store.remove("root")
    with pytest.raises(UserError, match="last admin"):
        store.set_role("root", "editor")
    store.add("second", "admin", "second-password")
    store.set_role("root", "viewer")
    with pytest.raises(UserError, match="last admin"):
        store.remove("second")


def test_passwords_are_argon2_hashed_never_plain(tmp_path, store):
    store.add("alice", "viewer", "plain-text-secret-42")
    generated = store.add("bob", "viewer")
    raw = (tmp_path / "users.sqlite3").read_bytes()
    assert b"plain-text-secret-42" not in raw and generated.encode() not in raw
    hashes = sqlite3.connect(tmp_path / "users.sqlite3").execute("SELECT password_hash FROM users").fetchall()
    assert all(h.startswith("$argon2id$") for (h,) in hashes)
    assert (tmp_path / "users.sqlite3").stat().st_mode & 0o077 == 0


def test_authenticate(store):
    store.add("alice", "editor", "right-password")
    user = store.authenticate("alice", "right-password")
    assert user == User("alice", "editor", user.created)
    assert store.authenticate("alice", "wrong-password") is None
    assert store.authenticate("alice", "") is None
    assert store.authenticate("nobody", "right-password") is None
    new = store.set_password("alice")
    assert store.authenticate("alice", "right-password") is None
    assert store.authenticate("alice", new).name == "alice"


def test_ensure_admin_only_when_there_is_no_user(tmp_path):
    store = UserStore(tmp_path / "a.sqlite3")
    generated = store.ensure_admin()
    assert generated and store.authenticate("admin", generated).role == "admin"
    assert store.ensure_admin() is None and len(store.list()) == 1

    given = UserStore(tmp_path / "b.sqlite3")
    assert given.ensure_admin("from-the-environment") is None
    assert given.authenticate("admin", "from-the-environment").role == "admin"


def test_permission_matrix():
    expected = {
        "viewer": {"chat", "documents.read"},
        "editor": {"chat", "documents.read", "documents.write"},
        "admin": set(PERMISSIONS),
    }
    for role in ROLES:
        assert {p for p in PERMISSIONS if allowed(role, p)} == expected[role]
    assert not any(allowed("intruder", p) for p in PERMISSIONS)
    with pytest.raises(ValueError):
        allowed("admin", "no-such-permission")


def test_require_names_user_role_and_permission():
    require(User("ed", "editor", ""), "documents.write")
    with pytest.raises(PermissionDenied) as denied:
        require(User("vi", "viewer", ""), "audit.export")
    message = str(denied.value)
    assert "vi" in message and "viewer" in message and "audit.export" in message and "admin" in message


def test_a_password_reset_or_role_change_or_removal_ends_the_users_logins(store):
    """Each login remembers the user's session epoch; these changes replace it, so older logins no longer count."""
    store.add("alice", "editor", "alice-password-1")
    store.add("root", "admin", "root-password-1")
    login = store.authenticate("alice", "alice-password-1").session_epoch
    assert login and store.session_epoch("ALICE") == login == store.get("alice").session_epoch
    assert store.session_epoch("root") != login  # every user has their own

    store.set_password("alice", "alice-password-2")
    after_reset = store.session_epoch("alice")
    store.set_role("alice", "viewer")
    after_role = store.session_epoch("alice")
    store.revoke_sessions("alice")
    assert len({login, after_reset, after_role, store.session_epoch("alice")}) == 4
    store.remove("alice")
    assert store.session_epoch("alice") is None
    store.add("alice", "editor", "alice-password-1")  # the same name again is not the same login
    assert store.session_epoch("alice") not in (login, after_reset, after_role)


def test_a_store_from_before_session_epochs_is_upgraded(tmp_path):
    path = tmp_path / "users.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users (name TEXT PRIMARY KEY COLLATE NOCASE, role TEXT NOT NULL, "
               "password_hash TEXT NOT NULL, created TEXT NOT NULL)")
    db.execute("INSERT INTO users VALUES ('old', 'admin', 'x', '2025-01-01T00:00:00+00:00')")
    db.commit()
    db.close()
    store = UserStore(path)
    assert store.session_epoch("old") == ""
    store.revoke_sessions("old")
    assert store.session_epoch("old") != ""
    store.add("new", "viewer", "new-password-1")
    assert store.get("new").session_epoch
