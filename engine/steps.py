"""Steps 3–8 of product.md §2 for one validated token, inside one store transaction.

`Job.run(txn)` is what `Provisioner.apply_token` hands to `Store.atomic`: replay, find,
evaluate, link, mode and constraints, write, audit. It may run more than once (the store
retries a busy transaction), so it keeps no state between runs but what it recomputes.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from engine import recorded
from engine.bounds import unholdable
from engine.changes import Planned, clean, plan_write
from engine.config import Connection
from engine.result import Result, redacted_values, trace_json
from engine.store import StoredUser, Transaction, UserWrite
from engine.store.base import AuditRow
from engine.store.schema import Layout
from engine.store.values import fold, iso
from engine.token import Token
from rules.plan import Context, Plan, TraceEntry

EMAIL_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
TRANSIENT_FORMAT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"


class CompiledRulesLike(Protocol):
    """What the pipeline needs from `rules.CompiledRules`."""

    sha256: str

    def evaluate(
        self, attributes: Mapping[str, list[str]], context: Context, user: Mapping[str, Any] | None
    ) -> Plan: ...


class _Deny(Exception):
    """Internal: a step said no; carries the message of the `denied` result."""


class Subject(NamedTuple):
    """The identity an account is linked under (product.md §2 step 4)."""

    value: str
    key: str  # the link's lookup key: values.fold of an emailAddress NameID, else exact
    fmt: str | None
    transient: bool


def audit_row(result: Result, now: datetime) -> AuditRow:
    """The `audit` table's row for a result (redacted values, trace without values)."""
    return AuditRow(
        at=iso(now),
        connection=result.connection,
        subject=result.subject,
        token_id=result.token_id,
        outcome=result.outcome,
        reason=result.reason,
        message=result.message,
        user_id=result.user_id,
        changes=result.redacted_changes(),
        trace=_trace_text(tuple(result.trace)),
        rules_sha256=result.rules_sha256,
    )


@functools.lru_cache(maxsize=256)
def _trace_text(trace: tuple[TraceEntry, ...]) -> str:
    """The audit row's trace as JSON text; one rules file yields few distinct traces, so
    this is memoised (encoding it was a tenth of the per-token cost)."""
    return json.dumps(trace_json(list(trace)), ensure_ascii=False)


class UserView(Mapping[str, Any]):
    """The account as the rules see it (`user.FIELD`): sets as their sorted distinct
    values. Read on demand: most rules never look at the stored account."""

    __slots__ = ("_user",)

    def __init__(self, user: StoredUser) -> None:
        self._user = user

    def __getitem__(self, name: str) -> Any:
        user = self._user
        if name in user.fields:
            return user.fields[name]
        if name in user.members:
            return user.distinct(name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        yield from self._user.fields
        yield from self._user.members

    def __len__(self) -> int:
        return len(self._user.fields) + len(self._user.members)


def user_view(user: StoredUser | None) -> UserView | None:
    return None if user is None else UserView(user)


class Job:
    """One token's steps 3–8 inside one transaction (re-run whole on retry)."""

    def __init__(
        self,
        layout: Layout,
        conn: Connection,
        rules: CompiledRulesLike,
        token: Token,
        now: datetime,
        dry_run: bool,
    ) -> None:
        self.layout = layout
        self.conn = conn
        self.rules = rules
        self.token = token
        self.now = now
        self.dry_run = dry_run
        self.subject, self.subject_problem = subject_of(conn, token)
        self._plan: Plan | None = None  # the last evaluation (a denied result shows it)
        self._user_id: int | None = None  # the account in question, once known
        # Every evaluation and account of this run: their values of redacted names are
        # hidden in the result's message (Result.hide), whichever step wrote it.
        self._plans: list[Plan] = []
        self._accounts: list[StoredUser] = []

    def result(self, outcome: Any, **values: Any) -> Result:
        hidden = redacted_values(self.conn.redact, plans=self._plans, accounts=self._accounts)
        return Result(
            outcome,
            self.conn.id,
            subject=self.subject.value if self.subject else self.token.name_id,
            token_id=self.token.token_id,
            attributes=self.token.attributes,
            redact=self.conn.redact,
            rules_sha256=self.rules.sha256,
            dry_run=self.dry_run,
            hidden=tuple(hidden),
            **values,
        )

    def run(self, txn: Transaction) -> Result:
        self._plan, self._user_id, self._plans, self._accounts = None, None, [], []
        token_id = self.token.token_id
        if self.subject is not None and not self.subject.transient:
            txn.expect_link(self.conn.id, self.subject.key)
        if token_id is not None:
            if self.dry_run:
                seen = txn.token_seen(self.conn.id, token_id, self.now)
            else:
                seen = not txn.claim_token(self.conn.id, token_id, self.token.expires_at, self.now)
            if seen:
                message = f"token {token_id!r} was already used on connection {self.conn.id!r}"
                return self._finish(txn, self.result("rejected", reason="replay", message=message))
        try:
            result = self._decide(txn)
        except _Deny as deny:
            result = self.result(
                "denied", message=str(deny), plan=self._plan, user_id=self._user_id
            )
            if self._plan is not None:
                result.trace, result.skipped = list(self._plan.trace), list(self._plan.skipped)
        if self.conn.record and not self.dry_run:
            self._record(txn, result)
        return self._finish(txn, result)

    def _record(self, txn: Transaction, result: Result) -> None:
        """Keep the identity's validated attributes for `jitprov plan` (engine.recorded):
        under its link's key, or under its account when the subject is transient."""
        subject = self.subject
        if subject is None:
            return
        key = subject.key
        if subject.transient:
            if result.user_id is None:
                return  # no account, and the subject will never come again
            key = recorded.account_key(result.user_id)
        bag = recorded.bag_json(self.token, self.conn, txn.record_secret)
        txn.record_signin(
            recorded.Recorded(
                self.conn.id,
                key,
                subject.value,
                result.user_id,
                result.outcome,
                iso(self.now),
                self.rules.sha256,
                bag,
            )
        )

    def _finish(self, txn: Transaction, result: Result) -> Result:
        if not self.dry_run:
            txn.write_audit(audit_row(result, self.now))
            result.audit_written = True
        return result

    def _evaluate(self, user: StoredUser | None) -> Plan:
        assert self.subject is not None
        context = Context(
            subject=self.subject.value,
            subject_format=self.subject.fmt,
            issuer=self.token.issuer,
            connection=self.conn.id,
            authn_context=self.token.authn_context,
        )
        self._user_id = user.id if user else None
        plan = self.rules.evaluate(self.token.attributes, context, user_view(user))
        self._plan = plan
        if self.conn.redact:
            self._plans.append(plan)
            if user is not None:
                self._accounts.append(user)
        if plan.denied is not None:
            raise _Deny(plan.denied)
        _check_holdable(plan)
        return plan

    def _decide(self, txn: Transaction) -> Result:
        if self.subject is None:
            raise _Deny(self.subject_problem)
        subject, conn = self.subject, self.conn
        stored = None
        if not subject.transient:
            stored = txn.find_linked_user(conn.id, subject.key)
        plan = self._evaluate(stored)
        new_link = stored is None and not subject.transient
        linked = False
        if stored is None and conn.link_by:
            found = self._link_by(txn, plan, conn.link_by)
            if found is not None:
                stored, linked = found, not subject.transient
                plan = self._evaluate(found)
        if stored is not None and stored.disabled_at is not None and conn.on_disabled == "deny":
            raise _Deny(
                f"the account is disabled (since {stored.disabled_at}); an administrator"
                " enables it with `jitprov users enable`"
            )
        if stored is None:
            planned = self._creation(txn, plan)
            outcome = "created"
        else:
            if conn.mode == "create-only":
                planned = Planned(UserWrite(), fields=dict(stored.fields), members=stored.members)
            else:
                self._check_rename(txn, stored, plan)
                planned = plan_write(stored, plan, conn.id, self.layout)
            if stored.disabled_at is not None:  # on_disabled = "enable"
                planned.changes["disabled"] = [True, False]
            changed = bool(planned.write) or stored.disabled_at is not None
            outcome = "linked" if linked else ("updated" if changed else "unchanged")
        return self._write(txn, stored, planned, plan, outcome, new_link)

    def _link_by(self, txn: Transaction, plan: Plan, field: str) -> StoredUser | None:
        value = clean(plan.fields.get(field))
        if value is None:
            return None
        ids = txn.find_by_key(field, value)
        if not ids:
            return None
        if len(ids) > 1:
            raise _Deny(f"several accounts have {field} {value}; not linking to any of them")
        found = txn.load_user(ids[0])
        if found is None:  # deleted since the lookup (PostgreSQL, read committed)
            return None
        if found.linked_to(self.conn.id):
            raise _Deny(
                f"the account with {field} {value} is already linked to another identity of "
                f"connection {self.conn.id!r}"
            )
        if self.conn.protocol == "oidc" and field == "email" and not self.token.email_verified:
            raise _Deny(
                f"not linking to the account with email {value}: the token's email_verified "
                "claim is not true"
            )
        return found

    def _creation(self, txn: Transaction, plan: Plan) -> Planned:
        if self.conn.mode == "update-only":
            raise _Deny("no account to update (the connection's mode is update-only)")
        username = clean(plan.fields.get("username"))
        if username is None:
            raise _Deny("no rule produced a value for username")
        if txn.find_by_key("username", username):
            raise _Deny(f'username "{username}" is already taken by another account')
        return plan_write(None, plan, self.conn.id, self.layout)

    def _check_rename(self, txn: Transaction, stored: StoredUser, plan: Plan) -> None:
        if "username" not in plan.fields:
            return
        username = clean(plan.fields["username"])
        if username is None:
            raise _Deny("username cannot be emptied")
        current = stored.fields.get("username")
        if username == current or fold(username) == fold(current):
            return
        if any(i != stored.id for i in txn.find_by_key("username", username)):
            raise _Deny(f'username "{username}" is already taken by another account')

    def _write(
        self,
        txn: Transaction,
        stored: StoredUser | None,
        planned: Planned,
        plan: Plan,
        outcome: str,
        new_link: bool,
    ) -> Result:
        assert self.subject is not None
        subject, conn, now = self.subject, self.conn, self.now
        stamp = iso(now)
        links = list(stored.links) if stored else []
        if new_link or outcome == "linked":
            links = sorted([*links, (conn.id, subject.value)])
        user_id = stored.id if stored else None
        if not self.dry_run:
            if stored is None:
                user_id = txn.insert_user(planned.fields, now)
                txn.write_members(user_id, planned.write)
            elif planned.write:
                txn.update_user(stored.id, planned.write, now)
            if stored is not None and stored.disabled_at is not None:
                txn.set_disabled(stored.id, None, now)
            assert user_id is not None
            if new_link or outcome == "linked":
                txn.write_link(conn.id, subject.value, subject.key, user_id, now)
            elif not subject.transient:
                txn.touch_link(conn.id, subject.key, now)
        after = StoredUser(
            user_id or 0,
            planned.fields,
            planned.members,
            links,
            stored.created_at if stored else stamp,
            stamp if stored is None or planned.write else stored.updated_at,
        )
        return self.result(
            outcome,
            account=(after, self.layout),
            user_id=user_id,
            changes=planned.changes,
            sso="continue",
            trace=plan.trace,
            skipped=plan.skipped,
            plan=plan,
        )


def _check_holdable(plan: Plan) -> None:
    """`denied` when the rules produced text no store can hold (a NUL or a lone
    surrogate): intake refuses such token values, but a function can still make one
    (`dn_value` decodes the DN escape `\\00`) and so can a literal (`"\\u0000"`).
    One store would keep it and another refuse it; both now answer the same."""
    values = [(name, v) for name, v in plan.fields.items() if isinstance(v, str)]
    values += [(op.field, v) for op in plan.set_ops for v in op.values]
    for name, value in values:
        problem = unholdable(value, f"the value the rules give {name}")
        if problem is not None:
            raise _Deny(problem)


def subject_of(conn: Connection, token: Token) -> tuple[Subject | None, str]:
    """The account's identity (§2 step 4), or None and why it is missing (the pipeline
    and the case runner's seeding share it)."""
    if conn.subject_from:
        values = token.attributes.get(conn.subject_from) or []
        if not values:
            return None, f"the token has no {conn.subject_from} attribute (subject_from)"
        return Subject(values[0], values[0], token.name_id_format, False), ""
    if not token.name_id:
        return None, "the token has no subject"
    fmt = token.name_id_format
    key = fold(token.name_id) if fmt == EMAIL_FORMAT else token.name_id
    transient = fmt == TRANSIENT_FORMAT
    if transient and not conn.link_by:
        return None, (
            "a transient NameID changes at every sign-in: the connection needs link_by or "
            "subject_from to find the account"
        )
    return Subject(token.name_id, key, fmt, transient), ""
