"""API tokens: per-user bearer tokens for the REST API, in a local SQLite store that keeps only their sha256.

A token is `cmp_` + 32 random bytes (url-safe base64), shown once when issued. It acts as its user with the role the
user has at call time, and only while the user is the one it was issued to, unchanged: removing a user, changing their
role or resetting their password (which end their logins too) ends their tokens; a user removed and added again under
the same name does not get the old ones back."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from assistant.app.users import User, UserError, immediate_transaction, private_store

PREFIX = "cmp_"
MAX_LABEL = 100


class TokenError(UserError):
    """A token request that cannot be done: unknown token id, one already revoked, a bad label or expiry."""


@dataclass
class ApiToken:
    """A token as the rest of comply sees it (never the secret, never its hash)."""

    id: int
    user: str
    label: str
    role: str  # the user's role when it was issued: another role ends it
    user_created: str  # the user's creation time when it was issued: a re-added user is another user
    user_epoch: str  # the user's session epoch when it was issued (assistant/app/users.py): a reset ends the token
    created: str
    expires: str | None
    last_used: str | None
    revoked: str | None

    def expired(self, now: datetime | None = None) -> bool:
        """Whether its expiry time has passed."""
        return self.expires is not None and datetime.fromisoformat(self.expires) <= (now or datetime.now(UTC))

    def refusal(self, user: User | None) -> str | None:
        """Why this token may not act now (revoked, expired, its user removed or changed), or None when it may."""
        if self.revoked:
            return f"the token was revoked on {self.revoked}"
        if self.expired():
            return "the token has expired"
        if user is None or user.created != self.user_created:
            return "the token's user no longer exists"
        if user.role != self.role:
            return f"the token's user changed role ({self.role} -> {user.role}) since it was issued; issue a new one"
        if user.session_epoch != self.user_epoch:
            return "the token's user had their password reset (or was removed and added again) since it was issued"
        return None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "user_epoch"}


def token_hash(secret: str) -> str:
    """The sha256 (hex) a token is stored and looked up by; 256 random bits need no slow hash."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


_COLUMNS = "id, user, label, role, user_created, user_epoch, created, expires, last_used, revoked"


class TokenStore:
    """Tokens in one SQLite file (`settings.tokens_path`, mode 0600): id, user, label, sha256, times, revocation."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with private_store(self.path) as db:  # hashes only, but who holds a token is nobody else's business
            db.execute("""CREATE TABLE IF NOT EXISTS tokens (
                              id INTEGER PRIMARY KEY AUTOINCREMENT,
                              user TEXT NOT NULL COLLATE NOCASE,
                              label TEXT NOT NULL,
                              role TEXT NOT NULL,
                              user_created TEXT NOT NULL,
                              user_epoch TEXT NOT NULL,
                              hash TEXT NOT NULL UNIQUE,
                              created TEXT NOT NULL,
                              expires TEXT,
                              last_used TEXT,
                              revoked TEXT)""")

    def _transaction(self):
        return immediate_transaction(self.path)

    def issue(self, user: User, label: str | None = None, expires_days: float | None = None) -> tuple[ApiToken, str]:
        """A new token for `user`: (its record, the secret to show once). Only the secret's sha256 is kept."""
        label = (label or "").strip() or "api"
        if len(label) > MAX_LABEL or not label.isprintable():
            raise TokenError(f"the token name must be printable and at most {MAX_LABEL} characters")
        if expires_days is not None and expires_days <= 0:
            raise TokenError("--expires must be a positive number of days")
        secret = PREFIX + secrets.token_urlsafe(32)
        created = _now()
        expires = None if expires_days is None else \
            (datetime.now(UTC) + timedelta(days=expires_days)).isoformat(timespec="seconds")
        with self._transaction() as db:
            cursor = db.execute("INSERT INTO tokens (user, label, role, user_created, user_epoch, hash, created, "
                                "expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                (user.name, label, user.role, user.created, user.session_epoch, token_hash(secret),
                                 created, expires))
            token_id = cursor.lastrowid
        return ApiToken(token_id, user.name, label, user.role, user.created, user.session_epoch, created, expires,
                        None, None), secret

    def list(self, user: str | None = None) -> list[ApiToken]:
        """Every token (or `user`'s), oldest first."""
        sql, args = f"SELECT {_COLUMNS} FROM tokens", ()
        if user is not None:
            sql, args = sql + " WHERE user = ?", (user,)
        with self._transaction() as db:
            rows = db.execute(sql + " ORDER BY id", args).fetchall()
        return [ApiToken(*row) for row in rows]

    def revoke(self, token_id: int) -> ApiToken:
        """Revoke a token for good; returns it. An unknown or already revoked id is a TokenError."""
        with self._transaction() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM tokens WHERE id = ?", (token_id,)).fetchone()
            if row is None:
                raise TokenError(f"no token with id {token_id} (see `comply users tokens`)")
            if row[-1] is not None:
                raise TokenError(f"token {token_id} was already revoked on {row[-1]}")
            revoked = _now()
            db.execute("UPDATE tokens SET revoked = ? WHERE id = ?", (revoked, token_id))
        return ApiToken(*row[:-1], revoked)

    def find(self, secret: str) -> ApiToken | None:
        """The token whose secret this is (revoked and expired ones too: `refusal` says why they may not act), its
        last use set to now; None for anything else."""
        if not secret.startswith(PREFIX):
            return None
        digest = token_hash(secret)
        with self._transaction() as db:
            row = db.execute(f"SELECT {_COLUMNS}, hash FROM tokens WHERE hash = ?", (digest,)).fetchone()
            if row is None or not hmac.compare_digest(row[-1], digest):
                return None
            used = _now()
            db.execute("UPDATE tokens SET last_used = ? WHERE id = ?", (used, row[0]))
        token = ApiToken(*row[:-1])
        token.last_used = used
        return token
