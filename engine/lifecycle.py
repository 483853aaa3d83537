"""The account lifecycle outside sign-ins: disable, enable and delete an account, find
the stale ones, and prune what the store no longer needs.

Each change runs in one store transaction of its own and leaves an audit row saying
what an administrator did (outcome `disabled`, `enabled` or `deleted`, no connection),
so the audit log tells the whole story of an account, its end included. Pruning removes
rows in bounded batches, each its own short transaction, so sign-ins never wait long
behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from engine.config import Config
from engine.store import Store, StoredUser
from engine.store.base import AuditRow, Transaction
from engine.store.reads import HANDOFF_KEPT, PENDING_KEPT
from engine.store.values import iso

PRUNE_BATCH = 1000  # rows per transaction: each holds the write lock a few milliseconds


class NoSuchUser(LookupError):
    """No account has that username."""


def find(store: Store, username: str) -> StoredUser:
    """The account named `username` (any case); NoSuchUser when there is none."""
    user = store.user_by_username(username)
    if user is None:
        raise NoSuchUser(f"no user named {username!r}")
    return user


def _label(config: Config, user: StoredUser) -> str:
    """How an audit row names the account: its id, and its username unless some
    connection redacts usernames."""
    hidden = any("username" in c.redact for c in config.connections.values())
    name = user.fields.get("username")
    return f"account {user.id}" if hidden or name is None else f"account {user.id} ({name})"


def _admin_row(now: datetime, outcome: str, user_id: int, message: str) -> AuditRow:
    return AuditRow(
        at=iso(now),
        connection=None,
        subject=None,
        token_id=None,
        outcome=outcome,
        reason=None,
        message=message,
        user_id=user_id,
    )


def set_disabled(
    store: Store, config: Config, username: str, disabled: bool, now: datetime
) -> tuple[StoredUser, bool]:
    """Disable (or enable) an account: the account as it is now, and whether anything
    changed (disabling a disabled account changes nothing and writes no audit row)."""
    user = find(store, username)

    def work(txn: Transaction) -> tuple[StoredUser, bool]:
        current = txn.load_user(user.id) if txn.lock_user(user.id) else None
        if current is None:
            raise NoSuchUser(f"no user named {username!r}")
        if (current.disabled_at is not None) == disabled:
            return current, False
        txn.set_disabled(user.id, now if disabled else None, now)
        verb = "disabled" if disabled else "enabled"
        txn.write_audit(
            _admin_row(now, verb, user.id, f"{_label(config, user)} {verb} by an administrator")
        )
        current.disabled_at = iso(now) if disabled else None
        current.updated_at = iso(now)
        return current, True

    return store.atomic(work)


@dataclass(slots=True)
class Deleted:
    """What `delete` removed."""

    user: StoredUser
    counts: dict[str, int]

    def sentence(self) -> str:
        """What was deleted, for people."""
        members = sum(n for name, n in self.counts.items() if name in self.user.members)
        return (
            f"deleted {self.user.fields.get('username')} (account {self.user.id}) with"
            f" {self.counts['links']} identity link(s), {members} set member(s) and"
            f" {self.counts['recorded']} recorded sign-in(s)"
        )


def delete(store: Store, config: Config, username: str, now: datetime) -> Deleted:
    """Delete an account with its links, set members and recorded sign-ins, and audit
    it. The audit rows of its sign-ins stay (they are the record of what happened)."""
    user = find(store, username)

    def work(txn: Transaction) -> dict[str, int]:
        if not txn.lock_user(user.id):
            raise NoSuchUser(f"no user named {username!r}")
        counts = txn.delete_user(user.id)
        members = sum(n for name, n in counts.items() if name in user.members)
        message = (
            f"{_label(config, user)} deleted by an administrator, with {counts['links']}"
            f" identity link(s), {members} set member(s) and {counts['recorded']} recorded"
            " sign-in(s)"
        )
        txn.write_audit(_admin_row(now, "deleted", user.id, message))
        return counts

    return Deleted(user, store.atomic(work))


def last_seen(user: StoredUser, seen: dict[int, str | None]) -> str | None:
    """When the account last signed in (its latest link's), else when it was created."""
    return seen.get(user.id) or user.created_at


def stale(store: Store, cutoff: datetime) -> list[tuple[StoredUser, str | None]]:
    """Accounts not seen since `cutoff` (no sign-in through any link after it; an
    account never signed in counts from its creation), oldest first, with that time."""
    seen = store.last_seen()
    limit = iso(cutoff)
    found = [(u, last_seen(u, seen)) for u in store.users()]
    old = [(u, t) for u, t in found if t is None or t < limit]
    return sorted(old, key=lambda pair: (pair[1] or "", pair[0].id))


@dataclass(slots=True)
class Pruned:
    """How many rows `prune` removed, by what they were."""

    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


# What prune removes: (name, table, condition with {m} marks, its parameter).
Rule = tuple[str, str, str, Callable[[datetime, Config], datetime | None]]
RULES: tuple[Rule, ...] = (
    (
        "replay",
        "seen_tokens",
        "expires_at IS NOT NULL AND expires_at <= {m}",
        lambda now, _: now,
    ),
    ("requests", "pending_requests", "expires_at <= {m}", lambda now, _: now - PENDING_KEPT),
    ("handoffs", "handoffs", "expires_at <= {m}", lambda now, _: now - HANDOFF_KEPT),
    (
        "audit",
        "audit",
        "at < {m}",
        lambda now, c: (
            None if c.retention.audit_days is None else now - timedelta(days=c.retention.audit_days)
        ),
    ),
    (
        "recorded",
        "recorded_signins",
        "at < {m}",
        lambda now, c: (
            None
            if c.retention.recorded_days is None
            else now - timedelta(days=c.retention.recorded_days)
        ),
    ),
)


def _batch(table: str, where: str, params: tuple[object, ...], limit: int, txn: Transaction) -> int:
    return txn.delete_batch(table, where, params, limit)


def prune(
    store: Store,
    config: Config,
    now: datetime,
    *,
    batch: int = PRUNE_BATCH,
    dry_run: bool = False,
) -> Pruned:
    """Remove expired replay entries, sign-in requests and hand-offs, and the audit rows
    and recorded sign-ins older than `[retention]` says, `batch` rows per transaction.
    `dry_run`: count what would go, removing nothing."""
    pruned = Pruned()
    for name, table, where, cutoff_of in RULES:
        cutoff = cutoff_of(now, config)
        if cutoff is None:
            pruned.counts[name] = 0
            continue
        params = (iso(cutoff),)
        if dry_run:
            pruned.counts[name] = store.count_where(table, where, params)
            continue
        total = 0
        while True:
            gone = store.atomic(partial(_batch, table, where, params, batch))
            total += gone
            if gone < batch:
                break
        pruned.counts[name] = total
    return pruned
