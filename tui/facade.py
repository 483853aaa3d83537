"""The engine facade handed to the TUI: every method is a thin call into `engine`/`rules`.

Why a facade: the app never imports the engine's internals, so tests can hand it a
temporary workspace, and every state change goes through the same functions as the CLI
(`engine.config_edit` for the config, the provisioning pipeline for the store). Methods
are blocking; screens call them from workers. Problems a user can act on are raised as
`FacadeError` (the message is shown as a notification); nothing else is caught here.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.config import Config, ConfigError, Connection, load_config
from engine.config_edit import connection_problems, save_connection, write_atomically
from rules import SourceMap
from rules import check as check_rules
from rules.diagnostics import Diagnostic
from tui.widgets.views import (
    PAGE,
    USER_COLUMNS,
    AuditPage,
    CaseOutcome,
    Check,
    ConnectionRow,
    Decoded,
    Impact,
    Preview,
    Problem,
    UserDetail,
    UserRow,
    UsersPage,
    audit_line,
    cell,
    impact_of,
    preview_of,
)

__all__ = [
    "PAGE",
    "AuditPage",
    "CaseOutcome",
    "Check",
    "ConnectionRow",
    "Decoded",
    "Facade",
    "FacadeError",
    "Impact",
    "PlanCancelled",
    "Preview",
    "Problem",
    "UserDetail",
    "UsersPage",
]

TOKEN_SUFFIXES = (".toml", ".xml", ".b64", ".base64", ".jwt", ".txt")


class FacadeError(Exception):
    """A problem to show the user (a bad file, an invalid config, a failing store)."""


STALE = re.compile(r"stale:\s*(\S+)", re.IGNORECASE)  # the Users search's stale filter


class PlanCancelled(Exception):
    """Raised by a plan's `progress` callback to stop it (a newer text is on its way)."""


@dataclass(slots=True)
class Facade:
    """The workspace at `config_path`, seen through the engine's front doors."""

    config_path: Path
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _config: Config | None = None

    # -- the workspace -------------------------------------------------------------
    def load(self) -> Config:
        """(Re)load and validate the config; FacadeError when it is invalid now."""
        try:
            self._config = load_config(self.config_path)
        except ConfigError as exc:
            raise FacadeError(str(exc)) from None
        return self._config

    @property
    def config(self) -> Config:
        """The last config that loaded (loading it the first time)."""
        return self._config if self._config is not None else self.load()

    @property
    def root(self) -> Path:
        return self.config_path.parent

    def label(self) -> str:
        """The workspace as the title shows it: its folder's name."""
        return self.root.name or str(self.root)

    def connection(self, connection_id: str) -> Connection:
        try:
            return self.config.connections[connection_id]
        except KeyError:
            raise FacadeError(f"unknown connection {connection_id!r}") from None

    def shown(self, path: Path) -> str:
        """A path relative to the workspace when it is inside it."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def connections(self) -> list[ConnectionRow]:
        """Every connection with its rules status (reloads the config first)."""
        rows = []
        for c in self.load().connections.values():
            errors = warnings = 0
            unreadable = None
            try:
                errors, warnings = self.status(c.id, self.read_rules(c.id))
            except FacadeError as exc:
                unreadable = str(exc)
            shown = self.shown(c.rules)
            rows.append(
                ConnectionRow(c.id, c.protocol, c.mode, shown, errors, warnings, unreadable)
            )
        return rows

    # -- rules ---------------------------------------------------------------------
    def read_rules(self, connection_id: str) -> str:
        path = self.connection(connection_id).rules
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise FacadeError(
                f"{self.shown(path)}: not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
        except OSError as exc:
            raise FacadeError(f"{self.shown(path)}: cannot read: {exc.strerror}") from None

    def check(self, connection_id: str, source: str) -> Check:
        """Check `source` as `connection_id`'s rules (its fields and attributes) and, when
        it has no errors, make it evaluable for the preview. The editor re-checks on every
        keystroke and evaluates once, so it skips generating the compiled evaluator
        (`generate=False`: the reference evaluator gives the same plans)."""
        from rules import compile_rules

        connection = self.connection(connection_id)
        result = compile_rules(
            source, self.config.fields, attributes=connection.attributes, generate=False
        )
        problems = tuple(_problem(d, result.source) for d in result.diagnostics)
        return Check(source, problems, result.rules)

    def status(self, connection_id: str, source: str) -> tuple[int, int]:
        """(errors, warnings) of a rules text, through `rules.check`."""
        connection = self.connection(connection_id)
        found = check_rules(source, self.config.fields, attributes=connection.attributes)
        errors = sum(d.severity == "error" for d in found)
        return errors, len(found) - errors

    def format(self, source: str) -> str:
        """Canonical formatting; FacadeError when the text has syntax errors."""
        from rules.format import FormatError, format_source

        try:
            return format_source(source)
        except FormatError as exc:
            count = len(getattr(exc, "diagnostics", ()) or ())
            raise FacadeError(
                f"cannot format: fix the {count or ''} syntax error{'s' * (count != 1)} first".replace(
                    "  ", " "
                )
            ) from None

    def plan(
        self,
        connection_id: str,
        source: str,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> Impact:
        """The impact of `source` as `connection_id`'s rules: `jitprov plan` of the text
        over the connection's recorded sign-ins, against the accounts as stored now
        (nothing is written). FacadeError when the text does not compile or the store
        fails. Planned in this process (no worker pool), chunk by chunk: `progress(done,
        total)` is called between chunks and may raise PlanCancelled to stop the plan."""
        from engine.plan import plan as plan_rules
        from engine.provision import RulesError
        from engine.store import StoreError

        self.connection(connection_id)  # FacadeError when it is unknown
        try:
            report = plan_rules(self.config, connection_id, source, workers=1, progress=progress)
        except RulesError as exc:
            raise FacadeError(str(exc).splitlines()[0]) from None
        except StoreError as exc:
            raise FacadeError(f"store: {exc}") from None
        return impact_of(report)

    def save_rules(self, connection_id: str, source: str) -> None:
        path = self.connection(connection_id).rules
        try:
            write_atomically(path, source)
        except ConfigError as exc:
            raise FacadeError(f"{self.shown(path)}: {exc.detail}") from None

    # -- the config ----------------------------------------------------------------
    def connection_table(self, connection_id: str) -> dict[str, Any]:
        """The connection's keys as written in jitprov.toml (paths as typed)."""
        try:
            data = tomllib.loads(self.config_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise FacadeError(f"{self.config_path.name}: cannot read: {exc}") from None
        table = data.get("connections", {}).get(connection_id, {})
        return dict(table) if isinstance(table, dict) else {}

    def save_connection(
        self, connection_id: str, values: Mapping[str, Any], remove: tuple[str, ...] = ()
    ) -> Config:
        """Write the connection through `engine.config_edit` (validated before writing).
        Raises ConfigError, whose `key` says which field is wrong."""
        self._config = save_connection(self.config_path, connection_id, values, remove)
        return self._config

    def connection_problems(
        self, connection_id: str, values: Mapping[str, Any]
    ) -> list[tuple[str | None, str]]:
        """Every problem saving `values` would meet, (key or None, message), at once."""
        return connection_problems(self.config_path, connection_id, values)

    def create_starter_rules(self, relative: str) -> Path:
        """A starter rules file at `relative` (to jitprov.toml's folder), never over an
        existing file; FacadeError when it cannot be written."""
        from engine.saml.workspace import STARTER_RULES

        target = (self.root / relative).resolve()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("x", encoding="utf-8") as out:  # "x": never over a file
                out.write(STARTER_RULES)
        except FileExistsError:
            raise FacadeError(f"{relative} exists already") from None
        except OSError as exc:
            raise FacadeError(f"cannot create {relative}: {exc.strerror or exc}") from None
        return target

    # -- tokens, samples and cases -------------------------------------------------
    def samples(self, *, toml_only: bool = False) -> list[Path]:
        """Token files of the workspace's `samples/` folder, by name (`toml_only`: the
        TOML samples alone, which never expire)."""
        try:
            found = list((self.root / "samples").iterdir())
        except OSError:  # no folder, or an unreadable one: no samples to offer
            return []
        suffixes = (".toml",) if toml_only else TOKEN_SUFFIXES
        return sorted(p for p in found if p.suffix in suffixes and p.is_file())

    def cases(self, connection_id: str | None = None) -> list[Path]:
        """Rule test cases (`*.case.toml`) under the workspace's `tests/` folder; only
        those of `connection_id` when given (a case that does not load is left out)."""
        from engine.cases import CaseError, load_case

        try:
            found = sorted((self.root / "tests").rglob("*.case.toml"))
        except OSError:
            return []
        if connection_id is None:
            return found
        mine = []
        for path in found:
            try:
                if load_case(path, self.config).connection == connection_id:
                    mine.append(path)
            except CaseError:
                continue
        return mine

    def read_token(self, path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise FacadeError(f"{self.shown(path)}: cannot read: {exc.strerror}") from None

    def decode(self, connection_id: str, path: Path, *, at: datetime | None = None) -> Decoded:
        """Decode and validate a token (no store access): attributes or the rejection."""
        from engine.intake import read_token
        from engine.token import TokenRejected

        connection = self.connection(connection_id)
        raw = self.read_token(path)
        try:
            token = read_token(raw, connection, now=at or self.clock(), allow_samples=True)
        except TokenRejected as exc:
            return Decoded(None, None, (), exc.reason, exc.message)
        from engine.result import REDACTED

        attributes = tuple(
            (name, tuple(REDACTED for _ in values) if name in connection.redact else tuple(values))
            for name, values in token.attributes.items()
        )
        return Decoded(token.kind, token.name_id, attributes)

    def preview(self, connection_id: str, check: Check, path: Path) -> Preview:
        """A dry run of the token against the edited rules: nothing is written.

        The CLI's pipeline (`read_token`, then `Provisioner.apply_token` with the edited
        rules), except that the token's id is dropped: the preview shows what the rules
        do with a token that was applied before, instead of refusing it as a replay.
        """
        from engine.intake import read_token
        from engine.provision import Provisioner
        from engine.token import TokenRejected

        if check.compiled is None:
            message = "the rules have errors: fix them to see the preview"
            return Preview.failed(message, self.shown(path))
        raw, now = self._token_of(path)
        connection = self.connection(connection_id)
        provisioner = Provisioner(self.config, rules_loader=lambda _c, _f: check.compiled)
        try:
            token = read_token(raw, connection, now=now, allow_samples=True)
            token = dataclasses.replace(token, token_id=None)
            result = provisioner.apply_token(
                connection, token, now=now, dry_run=True, rules=check.compiled
            )
        except TokenRejected as exc:
            result = provisioner.reject(connection, exc.reason, exc.message, now=now, dry_run=True)
        finally:
            provisioner.close()
        return preview_of(result, self.shown(path))

    def _token_of(self, path: Path) -> tuple[bytes, datetime]:
        """A token file's bytes, or a case's token and its `at` (the validation time)."""
        if not path.name.endswith(".case.toml"):
            return self.read_token(path), self.clock()
        from engine.cases import CaseError, load_case

        try:
            case = load_case(path, self.config, self.shown(path))
        except CaseError as exc:
            raise FacadeError(str(exc)) from None
        return case.token, case.at or self.clock()

    def run_token(
        self, connection_id: str, path: Path, *, dry_run: bool, at: datetime | None = None
    ) -> Any:
        """`apply` (or `apply --dry-run`) of one token with unsigned samples allowed: the
        same `Provisioner.apply` the CLI calls, with the saved rules. Returns the Result."""
        from engine.provision import Provisioner, RulesError

        raw = self.read_token(path)
        provisioner = Provisioner(self.config)
        try:
            return provisioner.apply(
                connection_id, raw, now=at or self.clock(), dry_run=dry_run, allow_samples=True
            )
        except RulesError as exc:
            raise FacadeError(str(exc).splitlines()[0]) from None
        finally:
            provisioner.close()

    def run_cases(self, only: str | None = None) -> list[CaseOutcome]:
        """Every `*.case.toml` under tests/ (or the one named `only`, as the list shows
        it) through `jitprov test`'s runner: each case against a fresh store, nothing
        touches the workspace's store."""
        from engine.cases import discover, run_cases

        config = self.load()
        folder = self.root / "tests"

        def shown(path: Path) -> str:  # "okta/engineer-created": short enough for a list
            return str(path.relative_to(folder)).removesuffix(".case.toml")

        items = discover([folder], shown=shown) if folder.is_dir() else []
        items = [item for item in items if only is None or item[1] == only]
        return [
            CaseOutcome(r.path, r.status, "\n".join(r.diff_lines()) or "✔ passed")
            for r in run_cases(config, items, jobs=1)
        ]

    def key_status(self, connection_id: str) -> str:
        """The connection's key sources and warnings (`jitprov connection status`), as
        lines for the Signature tab; nothing is fetched."""
        from engine.keysources import key_status

        try:
            [status] = key_status(self.config, self.clock(), connection_id)
        except (FacadeError, ConfigError) as exc:
            return str(exc)
        lines = ["Keys:", *(f"  {s}" for s in status.sources)]
        lines += [f"  ⚠ {w}" for w in status.warnings]
        return "\n".join(lines)

    def sp_entity_id(self) -> str | None:
        """The config's `[sp] entity_id` (the audience imports default to), if any."""
        try:
            return self.config.sp_entity_id
        except FacadeError:
            return None  # an invalid config: the import reports it

    def read_metadata(self, path: Path) -> str:
        """The IdP entity ID of a metadata file; FacadeError saying why it is unusable."""
        from engine.saml.metadata import MetadataError, parse_metadata

        try:
            return parse_metadata(path.read_bytes()).entity_id
        except OSError as exc:
            raise FacadeError(f"{path}: cannot read: {exc.strerror or exc}") from None
        except MetadataError as exc:
            raise FacadeError(f"{path.name}: {exc}") from None

    def import_metadata(self, path: Path, *, audience: str | None = None) -> str:
        """Add a saml2 connection from IdP metadata (the `connection import-metadata`
        function); returns the new connection's id."""
        from engine.saml.metadata import MetadataError
        from engine.saml.workspace import import_metadata

        try:
            done = import_metadata(self.config_path, path, audience=audience)
        except MetadataError as exc:
            raise FacadeError(str(exc)) from None
        self.load()
        return done.connection_id

    # -- the store -----------------------------------------------------------------
    def _store(self, *, write: bool = False) -> Any:
        from engine.store import open_store

        try:
            return open_store(self.config, read_only_if_missing=not write)
        except Exception as exc:  # the store's own errors carry the reason
            raise FacadeError(f"store: {exc}") from None

    def users(self, query: str = "", *, limit: int = PAGE, offset: int = 0) -> UsersPage:
        """A page of accounts whose text fields contain `query` (searched in SQL), or,
        for `stale:AGE` (`stale:90d`, `stale:2026-01-01`), the accounts not seen since
        then, oldest first (`jitprov users list --not-seen-since AGE`)."""
        from engine import lifecycle
        from engine.moments import since
        from engine.store import StoreError

        stale = STALE.fullmatch(query.strip())
        store = self._store()
        try:
            if stale:
                cutoff = since(stale.group(1), self.clock())
                found = [user for user, _ in lifecycle.stale(store, cutoff)]
                users, total = found[offset : offset + limit], len(found)
            else:
                users, total = store.search_users(query, limit=limit, offset=offset)
        except ValueError as exc:
            raise FacadeError(f"stale: {exc}") from None
        except StoreError as exc:
            raise FacadeError(f"store: {exc}") from None
        finally:
            store.close()
        rows = []
        for u in users:
            username, email, display_name, active = (cell(u.fields.get(f)) for f in USER_COLUMNS)
            rows.append(UserRow(u.id, username, email, display_name, active, u.disabled_at))
        return UsersPage(tuple(rows), total, offset)

    def user(self, user_id: int) -> UserDetail:
        """One account: every field, its sets with their sources, links, audit rows."""
        from engine.store import StoreError

        store = self._store()
        try:
            stored = store.atomic(lambda txn: txn.load_user(user_id), write=False)
            audit = store.audit(user_id=user_id, limit=PAGE)
        except StoreError as exc:
            raise FacadeError(f"store: {exc}") from None
        finally:
            store.close()
        if stored is None:
            raise FacadeError(f"no user with id {user_id}")
        fields = tuple(
            (name, cell(stored.fields.get(name)))
            for name, kind in self.config.fields.items()
            if kind != "set"
        )
        sets = tuple(
            (name, tuple(sorted(stored.members.get(name, ()))))
            for name, kind in self.config.fields.items()
            if kind == "set"
        )
        return UserDetail(
            stored.id,
            fields,
            sets,
            tuple(stored.links),
            stored.created_at,
            stored.updated_at,
            tuple(audit_line(r) for r in audit),
            stored.disabled_at,
        )

    def audit(self, query: str = "", *, limit: int = PAGE, offset: int = 0) -> AuditPage:
        """A page of audit rows, newest first, whose text contains `query` (in SQL)."""
        from engine.store import StoreError

        store = self._store()
        try:
            rows, total = store.search_audit(query, limit=limit, offset=offset)
        except StoreError as exc:
            raise FacadeError(f"store: {exc}") from None
        finally:
            store.close()
        return AuditPage(tuple(audit_line(r) for r in rows), total, offset)

    # -- the account lifecycle (engine.lifecycle: one transaction and an audit row) --
    def disable_user(self, user_id: int) -> str:
        """Disable an account (its sign-ins are denied); what was done, as a sentence."""
        return self._set_disabled(user_id, disabled=True)

    def enable_user(self, user_id: int) -> str:
        """Enable a disabled account again; what was done, as a sentence."""
        return self._set_disabled(user_id, disabled=False)

    def delete_user(self, user_id: int) -> str:
        """Delete an account with its links, set members and recorded sign-ins (the audit
        keeps a row saying so); what was done, as a sentence."""
        from engine import lifecycle
        from engine.store import StoreError

        store = self._store(write=True)
        try:
            username = self._username_of(store, user_id)
            deleted = lifecycle.delete(store, self.config, username, self.clock())
        except lifecycle.NoSuchUser as exc:
            raise FacadeError(str(exc)) from None
        except StoreError as exc:
            raise FacadeError(f"store: {exc}") from None
        finally:
            store.close()
        return deleted.sentence()

    def _set_disabled(self, user_id: int, *, disabled: bool) -> str:
        from engine import lifecycle
        from engine.store import StoreError

        store = self._store(write=True)
        try:
            username = self._username_of(store, user_id)
            _, changed = lifecycle.set_disabled(
                store, self.config, username, disabled, self.clock()
            )
        except lifecycle.NoSuchUser as exc:
            raise FacadeError(str(exc)) from None
        except StoreError as exc:
            raise FacadeError(f"store: {exc}") from None
        finally:
            store.close()
        state = "disabled" if disabled else "enabled"
        name = f"{username} (account {user_id})"
        return f"{state} {name}" if changed else f"{name} was already {state}"

    @staticmethod
    def _username_of(store: Any, user_id: int) -> str:
        """The username of account `user_id` (engine.lifecycle finds accounts by it)."""
        stored = store.atomic(lambda txn: txn.load_user(user_id), write=False)
        if stored is None:
            raise FacadeError(f"no user with id {user_id}")
        username = stored.fields.get("username")
        if username is None:
            raise FacadeError(f"account {user_id} has no username")
        found = store.user_by_username(str(username))
        if found is None or found.id != user_id:  # another account folds to the same name
            raise FacadeError(f"account {user_id}: its username {username!r} is ambiguous")
        return str(username)


def _problem(diagnostic: Diagnostic, source_map: SourceMap) -> Problem:
    data = diagnostic.to_json(source_map, "")
    return Problem(
        diagnostic.severity,
        diagnostic.code,
        diagnostic.message,
        diagnostic.hint,
        int(str(data["line"])),
        int(str(data["column"])),
        int(str(data["end_line"])),
        int(str(data["end_column"])),
    )
