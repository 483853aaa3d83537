"""The provisioning pipeline (product.md §2 steps 3–8): one token in, one `Result` out.

`Provisioner` holds what a run reuses — the config, each connection's compiled rules
(compiled once), the open store — and `apply()` takes one token through decode and
validation (engine.intake), then, inside one store transaction, replay, find, evaluate,
link, mode and constraints, and the write with its audit row. The transaction is
retried whole when another process holds the store, so everything inside is
recomputed from what is stored at that moment: no lost update.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from engine.config import Config, Connection
from engine.intake import read_token
from engine.result import Result
from engine.steps import EMAIL_FORMAT, TRANSIENT_FORMAT, CompiledRulesLike, Job, audit_row
from engine.store import Store, StoreError, layout_for
from engine.store import open_store as _open_store
from engine.token import Token, TokenRejected
from rules import compile_rules, render

__all__ = [
    "EMAIL_FORMAT",
    "TRANSIENT_FORMAT",
    "CompiledRulesLike",
    "Provisioner",
    "RulesError",
    "audit_row",
    "load_rules",
]


class RulesError(Exception):
    """A connection's rules cannot be used (read error or compile errors); the message
    holds the rendered diagnostics."""


RulesLoader = Callable[[Connection, Config], CompiledRulesLike]


def load_rules(connection: Connection, config: Config) -> CompiledRulesLike:
    """Compile a connection's rules file; RulesError with the rendered errors."""
    return rules_from_source(connection, config, read_rules_source(connection))


def read_rules_source(connection: Connection) -> str:
    """The text of a connection's rules file; RulesError when it cannot be read."""
    try:
        return Path(connection.rules).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(f"{connection.rules}: cannot read the rules: {exc}") from None


def rules_from_source(connection: Connection, config: Config, source: str) -> CompiledRulesLike:
    """Compile `source` as a connection's rules; RulesError with the rendered errors."""
    path = connection.rules
    compiled = compile_rules(source, config.fields, attributes=connection.attributes)
    if not compiled.ok or compiled.rules is None:
        label = _label(path, config)
        text = "\n".join(render(d, compiled.source, label) for d in compiled.errors)
        raise RulesError(f"connection {connection.id!r}: its rules do not compile:\n{text}")
    rules: CompiledRulesLike = compiled.rules
    return rules


class Provisioner:
    """Provisions tokens into one store for one config; reuse it for a whole batch."""

    def __init__(
        self,
        config: Config,
        *,
        store: Store | None = None,
        rules_loader: RulesLoader = load_rules,
        shared_store: Callable[[], Store] | None = None,
    ) -> None:
        """`shared_store`: where the store comes from when it is shared with other
        provisioners (a server's threads share one PostgreSQL pool); this one then
        never closes it."""
        self.config = config
        self.layout = layout_for(config)
        self._store = store
        self._shared = shared_store
        self._stand_in = False  # the store is a dry run's in-memory stand-in
        self._rules: dict[str, CompiledRulesLike] = {}
        self._load = rules_loader

    def rules(self, connection: str) -> CompiledRulesLike:
        """The connection's compiled rules (compiled on first use); raises RulesError."""
        if connection not in self._rules:
            conn = self.config.connection(connection)
            self._rules[connection] = self._load(conn, self.config)
        return self._rules[connection]

    def store(self, *, dry_run: bool = False) -> Store:
        """The store, opened on first use. A dry run never creates a missing file (an
        empty in-memory stand-in serves it); the first real write replaces the stand-in."""
        if self._store is not None and self._stand_in and not dry_run:
            self.close()
        if self._store is None and self._shared is not None:
            self._store = self._shared()
        elif self._store is None:
            self._store = _open_store(self.config, read_only_if_missing=dry_run)
            path = self.config.store.path
            self._stand_in = dry_run and path is not None and not path.exists()
        return self._store

    def close(self) -> None:
        if self._store is not None and self._shared is None:
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
        now = now or datetime.now(UTC)
        read = self.intake(
            conn, raw, now=now, request_id=request_id, nonce=nonce, allow_samples=allow_samples
        )
        return self.record(conn, read, now=now, dry_run=dry_run)

    def intake(
        self,
        conn: Connection,
        raw: bytes,
        *,
        now: datetime,
        request_id: str | None = None,
        nonce: str | None = None,
        allow_samples: bool = False,
    ) -> Token | TokenRejected:
        """Step 2 alone: the validated token, or why it is refused. Nothing is written:
        `record` does that (so a server can validate while another process writes)."""
        self.rules(conn.id)  # RulesError before any work
        try:
            return read_token(
                raw,
                conn,
                now=now,
                request_id=request_id,
                nonce=nonce,
                allow_samples=allow_samples,
            )
        except TokenRejected as exc:
            return exc

    def record(
        self,
        conn: Connection,
        read: Token | TokenRejected,
        *,
        now: datetime,
        dry_run: bool,
        browser: str | None = None,
    ) -> Result:
        """Steps 3–8 for what `intake` gave: the account written, or the refusal audited.
        A response to a request jitprov sent gives the result that request's return URL;
        `browser` (a browser's post: the hash of its sign-in cookie) must be the one that
        asked for it."""
        return_to: str | None = None
        if not isinstance(read, TokenRejected) and read.in_response_to and not dry_run:
            answer = self._answering(conn, read, now, browser)
            if isinstance(answer, Result):
                return answer
            read, return_to = answer
        if isinstance(read, TokenRejected):
            return self.reject(
                conn, read.reason, read.message, now=now, dry_run=dry_run, subject=read.subject
            )
        result = self.apply_token(conn, read, now=now, dry_run=dry_run, rules=self.rules(conn.id))
        result.return_to = return_to
        return result

    def _answering(
        self, conn: Connection, token: Token, now: datetime, browser: str | None
    ) -> tuple[Token | TokenRejected, str | None] | Result:
        """A response to a request jitprov sent must answer an open one (taken now;
        engine.saml.authn_request): the token and the request's return URL. A store that
        fails here is the sign-in's `error`."""
        from engine.saml.authn_request import answered

        try:
            return token, answered(conn, token, self.store(), now, browser)
        except TokenRejected as exc:
            exc.subject = token.name_id
            return exc, None
        except StoreError as exc:
            job = Job(self.layout, conn, self.rules(conn.id), token, now, False)
            return self._store_error(job, exc, now)

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
        job = Job(self.layout, conn, rules or self.rules(conn.id), token, now, dry_run)
        try:
            return self.store(dry_run=dry_run).atomic(job.run, write=not dry_run)
        except StoreError as exc:
            return self._store_error(job, exc, now)

    def _store_error(self, job: Job, exc: StoreError, now: datetime) -> Result:
        """A token the store failed: `error`, its audit row tried on its own."""
        result = job.result("error", message=f"store error: {exc}")
        result.sso = "continue" if job.conn.on_error == "continue" else "stop"
        return self._audit_alone(result, now)

    def reject(
        self,
        conn: Connection,
        reason: str,
        message: str,
        *,
        now: datetime,
        dry_run: bool,
        subject: str | None = None,
    ) -> Result:
        """A token that failed decoding or validation: audited, nothing else written.
        `subject` is what the token claimed, when it could be read (null otherwise)."""
        rules = self._rules.get(conn.id)
        result = Result(
            "rejected",
            conn.id,
            subject=subject,
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


def _label(path: Path, config: Config) -> str:
    try:
        return str(Path(path).relative_to(config.root))
    except ValueError:
        return str(path)
