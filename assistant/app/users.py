"""Users, roles and permissions: a local SQLite store of argon2-hashed passwords and a role-based permission check."""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ingest.types import ComplyError

ROLES = ("viewer", "editor", "admin")  # each role may do everything the roles before it may do
PERMISSIONS: dict[str, str] = {
    "chat": "viewer",
    "documents.read": "viewer",
    "documents.write": "editor",
    "eval": "admin",
    "adapters": "admin",
    "users": "admin",
    "audit.export": "admin",
    "monitoring": "admin",
}
MIN_PASSWORD_LENGTH = 8
FIRST_ADMIN = "admin"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_HASHER = PasswordHasher()  # argon2id with the library's RFC 9106 defaults


class PermissionDenied(ComplyError):
    """A user tried something their role does not allow."""

    def __init__(self, user: str, role: str, permission: str):
        self.user, self.role, self.permission = user, role, permission
        self.needed = PERMISSIONS.get(permission, "unknown")
        super().__init__(f"user '{user}' (role {role}) may not use '{permission}': it needs the {self.needed} role")


class UserError(ComplyError):
    """A user-management request that cannot be done: unknown user, duplicate, bad role, weak password, last admin."""


@dataclass
class User:
    """A user as the rest of comply sees it (never with the password hash)."""

    name: str
    role: str
    created: str
    # changes when the password or role changes: a login made before no longer counts (assistant/app/sessions.py)
    session_epoch: str = field(default="", repr=False, compare=False)


def allowed(role: str, permission: str) -> bool:
    """Whether `role` grants `permission` (unknown roles grant nothing; unknown permissions are a programming error)."""
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission '{permission}' (known: {', '.join(PERMISSIONS)})")
    if role not in ROLES:
        return False
    return ROLES.index(role) >= ROLES.index(PERMISSIONS[permission])


def require(user: User, permission: str) -> None:
    """Raise PermissionDenied unless `user`'s role grants `permission`; call it on the server side of every action."""
    if not allowed(user.role, permission):
        raise PermissionDenied(user.name, user.role, permission)


def generate_password() -> str:
    """A random password (about 120 bits) for a new user, to be shown once."""
    return secrets.token_urlsafe(15)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise UserError(f"invalid user name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-'")
    return name


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"unknown role '{role}': choose one of {', '.join(ROLES)}")
    return role


def _check_password(name: str, password: str) -> str:
    if not password or not password.strip():
        raise UserError("the password is empty")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password is too short: use at least {MIN_PASSWORD_LENGTH} characters")
    if password.strip().lower() == name.lower():
        raise UserError("the password must not be the user name")
    return password


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _epoch() -> str:
    return secrets.token_hex(16)


@contextmanager
def immediate_transaction(path: Path) -> Iterator[sqlite3.Connection]:
    """One short-lived connection and transaction on a SQLite store: safe from any thread (Gradio, the API's workers)
    and any process (the CLI). BEGIN IMMEDIATE takes the write lock up front, so check-then-write (last admin, first
    admin, revoking a token once) is atomic."""
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    finally:
        db.close()


@contextmanager
def private_store(path: Path) -> Iterator[sqlite3.Connection]:
    """Open a SQLite store to set up its schema, `with private_store(path) as db: db.execute("CREATE ...")`; a new
    file is made readable by its owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with immediate_transaction(path) as db:
        yield db
    if new:
        os.chmod(path, 0o600)


class UserStore:
    """Users in one SQLite file (`settings.users_path`): name, role, argon2 hash, creation time. Names ignore case."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with private_store(self.path) as db:  # hashes only, but still nobody else's business
            db.execute("""CREATE TABLE IF NOT EXISTS users (
                              name TEXT PRIMARY KEY COLLATE NOCASE,
                              role TEXT NOT NULL CHECK (role IN ('viewer', 'editor', 'admin')),
                              password_hash TEXT NOT NULL,
                              created TEXT NOT NULL,
                              session_epoch TEXT NOT NULL DEFAULT '')""")
            columns = [row[1] for row in db.execute("PRAGMA table_info(users)")]
            if "session_epoch" not in columns:  # a store from before sessions were revocable
                db.execute("ALTER TABLE users ADD COLUMN session_epoch TEXT NOT NULL DEFAULT ''")

    def _transaction(self):
        return immediate_transaction(self.path)

    def add(self, name: str, role: str, password: str | None = None) -> str:
        """Create a user and return the password (a generated one when `password` is None); only its hash is stored."""
        _check_name(name)
        _check_role(role)
        password = generate_password() if password is None else _check_password(name, password)
        hashed = _HASHER.hash(password)
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise UserError(f"user '{name}' already exists")
            db.execute("INSERT INTO users VALUES (?, ?, ?, ?, ?)", (name, role, hashed, _now(), _epoch()))
        return password

    def remove(self, name: str) -> None:
        """Delete a user; refuses to remove the last admin."""
        with self._transaction() as db:
            role = self._role(db, name)
            if role == "admin" and self._admins(db) == 1:
                raise UserError(f"'{name}' is the last admin: add another admin first")
            db.execute("DELETE FROM users WHERE name = ?", (name,))

    def set_role(self, name: str, role: str) -> None:
        """Change a user's role, ending their logins; refuses to demote the last admin."""
        _check_role(role)
        with self._transaction() as db:
            current = self._role(db, name)
            if current == "admin" and role != "admin" and self._admins(db) == 1:
                raise UserError(f"'{name}' is the last admin: add another admin before changing this role")
            db.execute("UPDATE users SET role = ?, session_epoch = ? WHERE name = ?", (role, _epoch(), name))

    def set_password(self, name: str, password: str | None = None) -> str:
        """Replace a user's password, ending their logins, and return it (a generated one when `password` is None)."""
        password = generate_password() if password is None else _check_password(name, password)
        hashed = _HASHER.hash(password)
        with self._transaction() as db:
            self._role(db, name)
            db.execute("UPDATE users SET password_hash = ?, session_epoch = ? WHERE name = ?",
                       (hashed, _epoch(), name))
        return password

    def revoke_sessions(self, name: str) -> None:
        """End every login of `name` (the app refuses their session cookies from the next request on)."""
        with self._transaction() as db:
            self._role(db, name)
            db.execute("UPDATE users SET session_epoch = ? WHERE name = ?", (_epoch(), name))

    def session_epoch(self, name: str) -> str | None:
        """The user's current session epoch, or None for no such user: one quick read, made on every request."""
        db = sqlite3.connect(self.path, timeout=30)
        try:
            row = db.execute("SELECT session_epoch FROM users WHERE name = ?", (name,)).fetchone()
        finally:
            db.close()
        return row[0] if row else None

    def get(self, name: str) -> User | None:
        """The user called `name` (any case), or None."""
        with self._transaction() as db:
            row = db.execute("SELECT name, role, created, session_epoch FROM users WHERE name = ?",
                             (name,)).fetchone()
        return User(*row) if row else None

    def list(self) -> list[User]:
        """Every user, by name."""
        with self._transaction() as db:
            rows = db.execute("SELECT name, role, created FROM users ORDER BY name").fetchall()
        return [User(*row) for row in rows]

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if `password` is right, else None. Unknown names cost one hash too, so timing reveals little."""
        with self._transaction() as db:
            row = db.execute("SELECT name, role, created, password_hash, session_epoch FROM users WHERE name = ?",
                             (name,)).fetchone()
        if row is None:
            _verify(_dummy_hash(), password or "")
            return None
        if not password or not _verify(row[3], password):
            return None
        if _HASHER.check_needs_rehash(row[3]):  # the hash parameters were raised since this password was set
            with self._transaction() as db:
                db.execute("UPDATE users SET password_hash = ? WHERE name = ? AND password_hash = ?",
                           (_HASHER.hash(password), row[0], row[3]))
        return User(row[0], row[1], row[2], row[4])

    def ensure_admin(self, password: str | None = None) -> str | None:
        """When there is no user at all, create 'admin' with `password` or a generated one; return it if generated."""
        if password is not None and hasattr(password, "get_secret_value"):  # accept settings.admin_password as is
            password = password.get_secret_value()
        if self.list():
            return None
        generated = password is None
        password = generate_password() if generated else _check_password(FIRST_ADMIN, password)
        hashed = _HASHER.hash(password)
        with self._transaction() as db:
            if db.execute("SELECT COUNT(*) FROM users").fetchone()[0]:  # another process was first
                return None
            db.execute("INSERT INTO users VALUES (?, 'admin', ?, ?, ?)", (FIRST_ADMIN, hashed, _now(), _epoch()))
        return password if generated else None

    @staticmethod
    def _role(db: sqlite3.Connection, name: str) -> str:
        row = db.execute("SELECT role FROM users WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise UserError(f"no user '{name}'")
        return row[0]

    @staticmethod
    def _admins(db: sqlite3.Connection) -> int:
        return db.execute("SELECT COUNT(*) FROM users WHERE role = 'admin'").fetchone()[0]


def _verify(hashed: str, password: str) -> bool:
    try:
        return _HASHER.verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY:
        _DUMMY.append(_HASHER.hash(generate_password()))
    return _DUMMY[0]
