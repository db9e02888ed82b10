"""htpasswd files for the registry's basic auth (bcrypt only: the binary ignores other hashes).

bcrypt hashes are salted, so hashing again on every reconcile would change the Secret each time
and roll the Deployment for nothing. ``render`` therefore keeps an existing hash whenever it
still matches the user's password.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import bcrypt

USERNAME = re.compile(r"^[A-Za-z0-9._@-]{1,128}$")
# The registry's bcrypt library refuses passwords longer than 72 bytes.
MAX_PASSWORD_BYTES = 72
BCRYPT_ROUNDS = 10


class CredentialsError(ValueError):
    pass


def parse(text: str) -> dict[str, str]:
    """user → hash from an htpasswd file (blank lines and comments ignored)."""
    entries: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        user, _, hashed = line.partition(":")
        entries[user] = hashed
    return entries


BCRYPT_PREFIX = re.compile(r"^\$2[abxy]\$\d\d\$[./A-Za-z0-9]{53}$")


def validate_file(text: str) -> None:
    """Refuse files the registry would load with users silently missing (non-bcrypt entries)."""
    entries = parse(text)
    if not entries:
        raise CredentialsError("the htpasswd file holds no user")
    for user, hashed in entries.items():
        if not BCRYPT_PREFIX.match(hashed):
            raise CredentialsError(
                f"user {user!r}: only bcrypt hashes work (htpasswd -B); the registry ignores other entries"
            )


def validate_users(users: Mapping[str, str]) -> None:
    if not users:
        raise CredentialsError("the users Secret holds no user (keys are user names, values passwords)")
    for user, password in users.items():
        if not USERNAME.match(user):
            raise CredentialsError(f"user name {user!r} must match {USERNAME.pattern}")
        if not password:
            raise CredentialsError(f"user {user!r} has an empty password")
        if len(password.encode()) > MAX_PASSWORD_BYTES:
            raise CredentialsError(f"user {user!r}: password longer than {MAX_PASSWORD_BYTES} bytes")


def _matches(password: str, hashed: str) -> bool:
    try:
        return bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:
        return False


def render(users: Mapping[str, str], existing: str = "") -> str:
    """The htpasswd text for ``users`` (name → plain password), reusing matching old hashes."""
    validate_users(users)
    old = parse(existing)
    lines = []
    for user in sorted(users):
        hashed = old.get(user, "")
        if not (hashed and _matches(users[user], hashed)):
            hashed = bcrypt.hashpw(users[user].encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()
        lines.append(f"{user}:{hashed}")
    return "\n".join(lines) + "\n"
