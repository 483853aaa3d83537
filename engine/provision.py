"""The provisioning pipeline (product.md §2 steps 3–8): one token in, one `Result` out.

`Provisioner` holds what a run reuses — the config, each connection's compiled rules
(compiled once), the open store — and `apply()` takes one token through decode and
validation (engine.intake), then, inside one store transaction, replay, find, evaluate,
link, mode and constraints, and the write with its audit row. The transaction is
retried whole when another process holds the store, so everything inside is
recomputed from what is stored at that moment: no lost update.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from engine.changes import Planned, clean, plan_write
from engine.config import Config, Connection
from engine.intake import read_token
from engine.result import Result, trace_json, user_json
from engine.store import Store, StoredUser, StoreError, Transaction, UserWrite, layout_for
from engine.store import open_store as _open_store
from engine.store.base import AuditRow
from engine.store.sqlite import fold, iso
from engine.token import Token, TokenRejected
from rules.plan import Context, Plan, TraceEntry

EMAIL_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
TRANSIENT_FORMAT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"


class RulesError(Exception):
    """A connection's rules cannot be used (read error or compile errors); the message
    holds the rendered diagnostics."""


class CompiledRulesLike(Protocol):
    """What the pipeline needs from `rules.CompiledRules`."""

    sha256: str

    def evaluate(
        self, attributes: Mapping[str, list[str]], context: Context, user: Mapping[str, Any] | None
    ) -> Plan: ...


RulesLoader = Callable[[Connection, Config], CompiledRulesLike]


def load_rules(connection: Connection, config: Config) -> CompiledRulesLike:
    """Compile a connection's rules file; RulesError with the rendered errors."""
    from rules import compile_rules, render  # the compiler is only needed here

    path = connection.rules
    try:
        source = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(f"{path}: cannot read the rules: {exc}") from None
    compiled = compile_rules(source, config.fields, attributes=connection.attributes)
    if not compiled.ok or compiled.rules is None:
        label = _label(path, config)
        errors = [d for d in compiled.diagnostics if d.severity == "error"]
        text = "\n".join(render(d, compiled.source, label) for d in errors)
        raise RulesError(f"connection {connection.id!r}: its rules do not compile:\n{text}")
    rules: CompiledRulesLike = compiled.rules
    return rules


class _Deny(Exception):
    """Internal: a step said no; carries the message of the `denied` result."""


@dataclass(frozen=True, slots=True)
class _Subject:
    value: str
    key: str  # the link's lookup key: case-folded for emailAddress NameIDs
    fmt: str | None
    transient: bool


class Provisioner:
    """Provisions tokens into one store for one config; reuse it for a whole batch."""

    def __init__(
        self,
        config: Config,
        *,
        store: Store | None = None,
        rules_loader: RulesLoader = load_rules,
    ) -> None:
        self.config = config
        self.layout = layout_for(config)
        self._store = store
        self._rules: dict[str, CompiledRulesLike] = {}
        self._load = rules_loader

    def rules(self, connection: str) -> CompiledRulesLike:
        """The connection's compiled rules (compiled on first use); raises RulesError."""
        if connection not in self._rules:
            conn = self.config.connection(connection)
            self._rules[connection] = self._load(conn, self.config)
        return self._rules[connection]

    def store(self, *, dry_run: bool = False) -> Store:
        """The store, opened on first use (a dry run never creates a missing file)."""
        if self._store is None:
            self._store = _open_store(self.config, read_only_if_missing=dry_run)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def apply(
        self,
        connection: str,
        raw: bytes,
        *,
        now: datetime | None = None,
        dry_run: bool = False,
        allow_samples: bool = False,
        request_id: str | None = None,
        nonce: str | None = None,
    ) -> Result:
        """Provision one token as received. Raises only ConfigError (unknown connection)
        and RulesError; every other outcome, the store's failures too, is a Result."""
        conn = self.config.connection(connection)
        rules = self.rules(connection)
        now = now or datetime.now(UTC)
        try:
            token = read_token(
                raw,
                conn,
                now=now,
                request_id=request_id,
                nonce=nonce,
                allow_samples=allow_samples,
            )
        except TokenRejected as exc:
            return self.reject(conn, exc.reason, exc.message, now=now, dry_run=dry_run)
        return self.apply_token(conn, token, now=now, dry_run=dry_run, rules=rules)

    def apply_token(
        self,
        conn: Connection,
        token: Token,
        *,
        now: datetime,
        dry_run: bool = False,
        rules: CompiledRulesLike | None = None,
    ) -> Result:
        """Steps 3–8 for a validated token."""
        job = _Job(self, conn, rules or self.rules(conn.id), token, now, dry_run)
        try:
            return self.store(dry_run=dry_run).atomic(job.run, write=not dry_run)
        except StoreError as exc:
            result = job.result("error", message=f"store error: {exc}")
            result.sso = "continue" if conn.on_error == "continue" else "stop"
            return self._audit_alone(result, now)

    def reject(
        self, conn: Connection, reason: str, message: str, *, now: datetime, dry_run: bool
    ) -> Result:
        """A token that failed decoding or validation: audited, nothing else written."""
        rules = self._rules.get(conn.id)
        result = Result(
            "rejected",
            conn.id,
            reason=reason,
            message=message,
            redact=conn.redact,
            rules_sha256=rules.sha256 if rules else None,
            dry_run=dry_run,
        )
        return self._audit_alone(result, now)

    def _audit_alone(self, result: Result, now: datetime) -> Result:
        """The audit row of a result in its own transaction; the result says if it was
        written (a failure to audit never turns a rejection into something else)."""
        if result.dry_run:
            return result
        try:
            self.store().write_audit(audit_row(result, now))
            result.audit_written = True
            note = "the audit row was written"
        except StoreError as exc:
            result.audit_written = False
            note = f"the audit row could not be written either: {exc}"
        if result.outcome == "error":
            result.message = f"{result.message}; {note}"
        elif not result.audit_written:
            result.message = f"{result.message} ({note.replace(' either', '')})"
        return result


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


def user_view(user: StoredUser | None) -> dict[str, Any] | None:
    """The account as the rules see it (`user.FIELD`): sets as their distinct values."""
    if user is None:
        return None
    view: dict[str, Any] = dict(user.fields)
    for name in user.members:
        view[name] = user.distinct(name)
    return view


class _Job:
    """One token's steps 3–8 inside one transaction (re-run whole on retry)."""

    def __init__(
        self,
        owner: Provisioner,
        conn: Connection,
        rules: CompiledRulesLike,
        token: Token,
        now: datetime,
        dry_run: bool,
    ) -> None:
        self.layout = owner.layout
        self.conn = conn
        self.rules = rules
        self.token = token
        self.now = now
        self.dry_run = dry_run
        self.subject, self.subject_problem = _subject(conn, token)
        self._plan: Plan | None = None  # the last evaluation (a denied result shows it)
        self._user_id: int | None = None  # the account in question, once known

    def result(self, outcome: Any, **values: Any) -> Result:
        return Result(
            outcome,
            self.conn.id,
            subject=self.subject.value if self.subject else self.token.name_id,
            token_id=self.token.token_id,
            attributes=self.token.attributes,
            redact=self.conn.redact,
            rules_sha256=self.rules.sha256,
            dry_run=self.dry_run,
            **values,
        )

    def run(self, txn: Transaction) -> Result:
        token_id = self.token.token_id
        if token_id is not None:
            if self.dry_run:
                seen = txn.token_seen(self.conn.id, token_id, self.now)
            else:
                seen = not txn.claim_token(self.conn.id, token_id, self.token.expires_at, self.now)
            if seen:
                message = f"token {token_id!r} was already used on connection {self.conn.id!r}"
                return self._finish(txn, self.result("rejected", reason="replay", message=message))
        try:
            return self._finish(txn, self._decide(txn))
        except _Deny as deny:
            denied = self.result(
                "denied", message=str(deny), plan=self._plan, user_id=self._user_id
            )
            if self._plan is not None:
                denied.trace, denied.skipped = list(self._plan.trace), list(self._plan.skipped)
            return self._finish(txn, denied)

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
        if plan.denied is not None:
            raise _Deny(plan.denied)
        return plan

    def _decide(self, txn: Transaction) -> Result:
        if self.subject is None:
            raise _Deny(self.subject_problem)
        subject, conn = self.subject, self.conn
        stored = None
        if not subject.transient:
            user_id = txn.find_link(conn.id, subject.key)
            stored = txn.load_user(user_id) if user_id is not None else None
        plan = self._evaluate(stored)
        new_link = stored is None and not subject.transient
        linked = False
        if stored is None and conn.link_by:
            found = self._link_by(txn, plan, conn.link_by)
            if found is not None:
                stored, linked = found, not subject.transient
                plan = self._evaluate(found)
        if stored is None:
            planned = self._creation(txn, plan)
            outcome = "created"
        else:
            if conn.mode == "create-only":
                planned = Planned(UserWrite(), fields=dict(stored.fields), members=stored.members)
            else:
                self._check_rename(txn, stored, plan)
                planned = plan_write(stored, plan, conn.id, self.layout)
            outcome = "linked" if linked else ("updated" if planned.write else "unchanged")
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
        assert found is not None
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
        user = user_json(after, self.layout)
        user["id"] = user_id
        return self.result(
            outcome,
            user=user,
            user_id=user_id,
            changes=planned.changes,
            sso="continue",
            trace=list(plan.trace),
            skipped=list(plan.skipped),
            plan=plan,
        )


def _subject(conn: Connection, token: Token) -> tuple[_Subject | None, str]:
    """The account's identity (§2 step 4), or None and why it is missing."""
    if conn.subject_from:
        values = token.attributes.get(conn.subject_from) or []
        if not values:
            return None, f"the token has no {conn.subject_from} attribute (subject_from)"
        return _Subject(values[0], values[0], token.name_id_format, False), ""
    if not token.name_id:
        return None, "the token has no subject"
    fmt = token.name_id_format
    key = token.name_id.casefold() if fmt == EMAIL_FORMAT else token.name_id
    transient = fmt == TRANSIENT_FORMAT
    if transient and not conn.link_by:
        return None, (
            "a transient NameID changes at every sign-in: the connection needs link_by or "
            "subject_from to find the account"
        )
    return _Subject(token.name_id, key, fmt, transient), ""


def _label(path: Path, config: Config) -> str:
    try:
        return str(Path(path).relative_to(config.root))
    except ValueError:
        return str(path)
