"""The narrow store interface the pipeline talks to (SQLite today, PostgreSQL later).

The pipeline runs all of one token's reads and writes inside `Store.atomic(work)`: one
write transaction (`BEGIN IMMEDIATE` in SQLite, `SERIALIZABLE`/row locks elsewhere),
retried as a whole when the database is busy, so `work` must have no effects outside
the `Transaction` it is given. Values crossing the interface are plain Python: a field
value is a `rules.plan.Scalar`; a set member is `(value, source)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, TypeVar

from rules.plan import Scalar

if TYPE_CHECKING:
    from engine.recorded import Recorded

T = TypeVar("T")

Member = tuple[str, str]  # (value, source): source is a connection id or "local"
LOCAL_SOURCE = "local"


RetryListener = Callable[[str], None]
_retry_listeners: list[RetryListener] = []


def listen_for_retries(listener: RetryListener) -> Callable[[], None]:
    """Call `listener(engine)` ("sqlite" or "postgresql") each time a store of this
    process retries a transaction (busy, serialization failure); returns the function
    that stops it. Used by `jitprov serve` for its store-retries metric."""
    _retry_listeners.append(listener)
    return lambda: _retry_listeners.remove(listener) if listener in _retry_listeners else None


def retried(engine: str) -> None:
    """A store of `engine` is about to retry a transaction: tell the listeners."""
    for listener in tuple(_retry_listeners):
        listener(engine)


class StoreError(Exception):
    """The store failed: cannot open, read-only, corrupt, disk full, or busy too long."""


class SchemaError(StoreError):
    """The config's fields cannot be mapped onto the store's tables."""


@dataclass(slots=True)
class StoredUser:
    """One account as stored: scalar fields, set members with their sources, links."""

    id: int
    fields: dict[str, Scalar]
    members: dict[str, set[Member]]
    links: list[tuple[str, str]]  # (connection, subject), sorted
    created_at: str | None
    updated_at: str | None
    disabled_at: str | None = None  # when an administrator disabled it (None: enabled)

    def distinct(self, set_field: str) -> list[str]:
        """A set as users and rules see it: its distinct values, sorted."""
        return sorted({value for value, _ in self.members.get(set_field, ())})

    def linked_to(self, connection: str) -> bool:
        return any(c == connection for c, _ in self.links)


@dataclass(slots=True)
class AuditRow:
    """One row of the `audit` table; `changes` and `trace` are JSON-ready values (or their
    JSON text, already encoded; read back they are always values)."""

    at: str
    connection: str | None
    subject: str | None
    token_id: str | None
    outcome: str
    reason: str | None
    message: str | None
    user_id: int | None
    changes: object = field(default_factory=dict)
    trace: object = field(default_factory=list)
    rules_sha256: str | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """A sign-in this SP started (an AuthnRequest sent): answered once, before
    `expires_at`; `return_to` is where the person goes next."""

    connection: str
    request_id: str  # SAML: the AuthnRequest's ID; OIDC: the `state`
    expires_at: datetime
    return_to: str | None = None
    nonce: str | None = None  # OIDC: the ID token must carry it
    verifier: str | None = None  # OIDC: the PKCE code_verifier, sent with the code
    browser: str | None = None  # the SHA-256 of the sign-in cookie of the browser that asked


@dataclass(frozen=True, slots=True)
class Handoff:
    """A sign-in handed to the application: its result object (JSON text), picked up
    once by the sha256 of its reference before `expires_at`; `picked_at` when it was."""

    ref_hash: str
    connection: str
    result: str
    expires_at: datetime
    picked_at: datetime | None = None


@dataclass(slots=True)
class UserWrite:
    """What one token changes in an account: columns to set, member rows to add and to
    delete, keyed by set field. Empty when nothing changes."""

    fields: dict[str, Scalar] = field(default_factory=dict)
    insert: dict[str, list[Member]] = field(default_factory=dict)
    delete: dict[str, list[Member]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.fields) or any(self.insert.values()) or any(self.delete.values())


class Transaction(Protocol):
    """The reads and writes of one token, all inside one store transaction."""

    def expect_link(self, connection: str, subject_key: str) -> None:
        """A hint: `find_linked_user(connection, subject_key)` comes next (after the
        token's claim); a store may send that lookup along with the claim."""
        ...

    def claim_token(
        self, connection: str, token_id: str, expires_at: datetime | None, now: datetime
    ) -> bool:
        """Record the token id; False when it is already recorded and not yet expired."""
        ...

    def token_seen(self, connection: str, token_id: str, now: datetime) -> bool:
        """True when the id is recorded and not yet expired (reads only: dry runs)."""
        ...

    def load_user(self, user_id: int) -> StoredUser | None: ...

    def find_linked_user(self, connection: str, subject_key: str) -> StoredUser | None:
        """The account linked to (connection, normalised subject), with its members and
        links, or None (one statement for the link and the row: every sign-in's lookup)."""
        ...

    def find_by_key(self, field: str, value: Scalar) -> list[int]:
        """Accounts whose `field` equals `value` case-insensitively (at most two)."""
        ...

    def insert_user(self, fields: Mapping[str, Scalar], now: datetime) -> int: ...

    def update_user(self, user_id: int, write: UserWrite, now: datetime) -> None:
        """Write changed columns (with `updated_at`) and member rows."""
        ...

    def write_members(self, user_id: int, write: UserWrite) -> None:
        """Only the member rows of `write` (a new account's sets)."""
        ...

    def write_link(
        self, connection: str, subject: str, subject_key: str, user_id: int, now: datetime
    ) -> None: ...

    def touch_link(self, connection: str, subject_key: str, now: datetime) -> None:
        """Only the link's `last_seen_at` (the `unchanged` outcome)."""
        ...

    def write_audit(self, row: AuditRow) -> None: ...

    def record_signin(self, row: Recorded) -> None:
        """Keep an identity's latest sign-in for `jitprov plan` (replacing the last)."""
        ...

    def record_secret(self) -> bytes:
        """The store's key for the hashes of redacted attributes in recorded sign-ins."""
        ...

    def set_disabled(self, user_id: int, at: datetime | None, now: datetime) -> None:
        """Disable an account from `at` (None: enable it again)."""
        ...

    def lock_user(self, user_id: int) -> bool:
        """Take the account's row for an administrator's change (a sign-in of it waits,
        or is waited for); False when there is no such account."""
        ...

    def delete_user(self, user_id: int) -> dict[str, int]:
        """Delete an account with its set members, links and recorded sign-ins: the
        number of rows that went, by set field, "links", "recorded" and "users"."""
        ...

    def delete_batch(self, table: str, where: str, params: tuple[object, ...], limit: int) -> int:
        """Delete at most `limit` rows of one of the prunable tables matching `where`
        (parameter marks written `{m}`): how many went."""
        ...


class Store(Protocol):
    """A user store: one transaction per token, plus the reads of `users` and `audit`."""

    def atomic(self, work: Callable[[Transaction], T], *, write: bool = True) -> T:
        """Run `work` in one transaction and commit (write=False: roll back), retrying
        the whole of it while the database is busy. Raises StoreError."""
        ...

    def write_audit(self, row: AuditRow) -> None:
        """One audit row in its own transaction."""
        ...

    def users(self) -> list[StoredUser]: ...

    def user_by_username(self, username: str) -> StoredUser | None:
        """Matched case-insensitively (values.fold: NFC, then lower case)."""
        ...

    def audit(self, *, limit: int | None = None, user_id: int | None = None) -> list[AuditRow]:
        """Newest first."""
        ...

    def search_users(
        self, query: str, *, limit: int, offset: int = 0
    ) -> tuple[list[StoredUser], int]:
        """A page of accounts (by id) whose single-valued text fields contain `query`
        (case-insensitively; "" matches all), and how many match in all."""
        ...

    def search_audit(
        self, query: str, *, limit: int, offset: int = 0
    ) -> tuple[list[AuditRow], int]:
        """A page of audit rows (newest first) whose connection, subject, token id,
        outcome, reason or message contains `query`, and how many match in all."""
        ...

    def last_seen(self) -> dict[int, str | None]:
        """Each linked account's latest sign-in time (its links' newest last_seen_at)."""
        ...

    def count_where(self, table: str, where: str, params: tuple[object, ...]) -> int:
        """How many rows of a prunable table match `where` (marks written `{m}`)."""
        ...

    def recorded(
        self,
        connection: str,
        since: str | None = None,
        first: str | None = None,
        last: str | None = None,
    ) -> list[Recorded]:
        """The connection's recorded sign-ins (at or after `since`, ISO 8601; keys from
        `first` to `last` when both are given), by key."""
        ...

    def recorded_keys(self, connection: str, since: str | None = None) -> list[str]:
        """The keys of the connection's recorded sign-ins (at or after `since`), sorted."""
        ...

    def add_members(self, user_id: int, set_field: str, members: Iterable[Member]) -> None:
        """Add member rows outside the pipeline (tests, fixtures, administrators)."""
        ...

    def add_pending(self, pending: PendingRequest, now: datetime) -> None:
        """Record a request this SP sent, in its own transaction."""
        ...

    def take_pending(self, connection: str, request_id: str) -> PendingRequest | None:
        """Remove and give the recorded request (single use); None when there is none."""
        ...

    def add_handoff(self, handoff: Handoff, now: datetime) -> None:
        """Record a sign-in for the application to pick up, in its own transaction."""
        ...

    def take_handoff(self, ref_hash: str, now: datetime) -> Handoff | None:
        """Mark the hand-off picked up and give it as it was before (its `picked_at` set
        when it had been picked up already); None when there is none."""
        ...

    def close(self) -> None: ...
