"""Users, applications and access tokens.

An application's `client_secret` is needed in clear text later (signed links are verified with
it), so it is stored encrypted with the server key, never hashed. Access tokens are only ever
compared, so only their SHA-256 is stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import delete, select

from leaktrace.ids import new_id, now_ms
from leaktrace.store.db import Database
from leaktrace.store.errors import InvalidInput, NotFound
from leaktrace.store.models import AccessToken, Application, User
from leaktrace.store.pipelines import DEFAULT_NAME, add_pipeline

ALL_SCOPES = (
    "me",
    "mediahub",
    "mediahub_read",
    "mediahub_write",
    "mediahub_submit_jobs",
    "mediahub_download_files",
    "autograph",
)
# A broad scope grants the narrower ones it contains.
IMPLIED_SCOPES = {
    "mediahub": {"mediahub_read", "mediahub_write", "mediahub_submit_jobs", "mediahub_download_files"},
    "mediahub_write": {"mediahub_submit_jobs"},
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: the account, the application and the scopes the token carries."""

    user_id: str
    application_id: str
    scopes: frozenset[str]

    def has_any(self, wanted: tuple[str, ...]) -> bool:
        """True when one of `wanted` is granted, directly or through a broader scope."""
        return any(scope in effective_scopes(self.scopes) for scope in wanted)


def effective_scopes(granted: frozenset[str] | set[str]) -> set[str]:
    """`granted` plus every scope a granted one implies."""
    result = set(granted)
    for scope in granted:
        result |= IMPLIED_SCOPES.get(scope, set())
    return result


def parse_scopes(text: str) -> list[str]:
    """Split a comma- or space-separated scope list, rejecting unknown scopes."""
    scopes = [part for part in text.replace(" ", ",").split(",") if part]
    unknown = [scope for scope in scopes if scope not in ALL_SCOPES]
    if unknown:
        raise InvalidInput(f"unknown scope: {', '.join(unknown)}")
    return list(dict.fromkeys(scopes))


def create_user(db: Database, *, name: str, email: str | None = None) -> User:
    """Create an account together with its "Default Pipeline"."""
    with db.write() as session:
        user = User(id=new_id(), name=name, email=email)
        session.add(user)
        session.flush()
        add_pipeline(session, user_id=user.id, name=DEFAULT_NAME, description="Created with the account", is_default=True)
    return user


def find_user_by_name(db: Database, *, name: str) -> User | None:
    """The oldest account with this screen name, if any."""
    with db.read() as session:
        return session.scalars(select(User).where(User.name == name).order_by(User.created_at, User.id)).first()


def get_user(db: Database, *, user_id: str) -> User:
    """The account `user_id`; NotFound otherwise."""
    with db.read() as session:
        user = session.get(User, user_id)
    if user is None:
        raise NotFound("User does not exist")
    return user


USER_FIELDS = ("first_name", "last_name", "name", "email")
USER_GROUPS = ("billing_address", "profile", "setting")


def update_user(db: Database, *, user_id: str, changes: dict[str, Any]) -> User:
    """Apply a partial update: given keys change (null resets), groups merge key by key."""
    with db.write() as session:
        user = session.get(User, user_id)
        if user is None:
            raise NotFound("User does not exist")
        for key in USER_FIELDS:
            if key in changes:
                setattr(user, key, changes[key])
        for key in USER_GROUPS:
            if key in changes:
                merged = dict(getattr(user, key) or {})
                merged.update(changes[key] or {})
                setattr(user, key, merged)
        user.version += 1
        user.updated_at = now_ms()
    return user


def new_client_secret() -> str:
    """64 characters of standard base64, like MediaHub's secrets."""
    return base64.b64encode(secrets.token_bytes(48)).decode()


def create_application(
    db: Database, fernet: Fernet, *, user_id: str, name: str, scopes: list[str]
) -> tuple[Application, str]:
    """Create an application; returns it with its clear-text secret (shown once)."""
    secret = new_client_secret()
    with db.write() as session:
        app = Application(
            user_id=user_id,
            name=name,
            client_id=new_id(),
            secret_encrypted=fernet.encrypt(secret.encode()).decode(),
            scopes=",".join(scopes),
        )
        session.add(app)
    return app, secret


def reset_client_secret(db: Database, fernet: Fernet, *, client_id: str) -> tuple[Application, str]:
    """Give an application a new secret and revoke its tokens; returns the clear-text secret."""
    secret = new_client_secret()
    with db.write() as session:
        app = session.scalars(select(Application).where(Application.client_id == client_id)).first()
        if app is None:
            raise NotFound("Application does not exist")
        app.secret_encrypted = fernet.encrypt(secret.encode()).decode()
        app.version += 1
        app.updated_at = now_ms()
        for token in session.scalars(select(AccessToken).where(AccessToken.application_id == app.id)):
            session.delete(token)
    return app, secret


def client_secret(fernet: Fernet, app: Application) -> str:
    """The clear-text secret of `app` (for verifying signed links)."""
    return fernet.decrypt(app.secret_encrypted.encode()).decode()


def verify_client(db: Database, fernet: Fernet, *, client_id: str, secret: str) -> Application | None:
    """The enabled application with these credentials, or None."""
    with db.read() as session:
        app = session.scalars(select(Application).where(Application.client_id == client_id)).first()
    if app is None or not app.enabled:
        return None
    if not hmac.compare_digest(client_secret(fernet, app).encode(), secret.encode()):
        return None
    return app


def get_application(db: Database, *, user_id: str, application_id: str) -> Application:
    """One of the account's applications; NotFound otherwise."""
    with db.read() as session:
        app = session.get(Application, application_id)
    if app is None or app.user_id != user_id:
        raise NotFound("Application does not exist")
    return app


def list_applications(db: Database, *, user_id: str) -> list[Application]:
    """The account's applications, oldest first."""
    with db.read() as session:
        stmt = select(Application).where(Application.user_id == user_id).order_by(Application.created_at, Application.id)
        return list(session.scalars(stmt))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(db: Database, *, app: Application, scopes: list[str], lifetime_s: int) -> str:
    """Store a new bearer token for `app`; returns it in clear text (64 base64url characters).

    The application's expired tokens are deleted on the way, so the table does not grow forever.
    """
    token = secrets.token_urlsafe(48)
    now = now_ms()
    with db.write() as session:
        session.execute(delete(AccessToken).where(AccessToken.application_id == app.id, AccessToken.expires_at <= now))
        session.add(
            AccessToken(
                token_hash=_token_hash(token),
                application_id=app.id,
                user_id=app.user_id,
                scopes=",".join(scopes),
                created_at=now,
                expires_at=now + lifetime_s * 1000,
            )
        )
    return token


def authenticate(db: Database, *, token: str) -> Principal | None:
    """The caller behind a bearer token, or None when it is unknown, expired or its app disabled."""
    with db.read() as session:
        row = session.execute(
            select(AccessToken, Application.enabled)
            .join(Application, Application.id == AccessToken.application_id)
            .where(AccessToken.token_hash == _token_hash(token))
        ).first()
    if row is None:
        return None
    access, enabled = row
    if not enabled or access.expires_at <= now_ms():
        return None
    return Principal(
        user_id=access.user_id,
        application_id=access.application_id,
        scopes=frozenset(s for s in access.scopes.split(",") if s),
    )


def signing_secret(db: Database, fernet: Fernet, *, application_id: str) -> str | None:
    """The clear-text secret of an enabled application (it signs pings), or None."""
    with db.read() as session:
        app = session.get(Application, application_id)
    if app is None or not app.enabled:
        return None
    return client_secret(fernet, app)


def link_signer(db: Database, fernet: Fernet, *, client_id: str) -> tuple[Principal, str] | None:
    """The caller a signed link speaks for (the application's owner, with the application's
    scopes) and the application's clear-text secret; None for an unknown or disabled application."""
    with db.read() as session:
        app = session.scalars(select(Application).where(Application.client_id == client_id)).first()
    if app is None or not app.enabled:
        return None
    scopes = frozenset(s for s in app.scopes.split(",") if s)
    return Principal(user_id=app.user_id, application_id=app.id, scopes=scopes), client_secret(fernet, app)
