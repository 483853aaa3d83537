"""`jitprov plan`: a rules text replayed over a connection's recorded sign-ins.

Each identity's latest validated token (engine.recorded) goes through the pipeline's
steps 3–8 exactly as its next sign-in would — the same `Job`, in a dry run, against
the account as stored now — with the rules being planned. Nothing is written. What
comes out, per identity, is the result that sign-in would have: the outcome, the
changes, the rules lines that set each changed field (or the `deny` line). A plan is
therefore exact for each identity taken alone; identities are not replayed one after
the other, so two that would collide with each other (both taking one username) are
each planned against the store as it is.

Verdicts: `change` (the sign-in would create, update or link an account), `deny` (it
would be denied where its last sign-in was not), `same` (nothing would change, or it
was denied and still would be). Large populations are split into chunks of identities
planned in parallel worker processes, each with its own store connection.

Speed (bench/bench_plan.py, 100,000 identities): a worker process reads the config,
opens the store and compiles the rules at its first chunk and keeps them for the
others; plans come back pickled as their fields (AccountPlan.__reduce__). Fewer than
IN_PROCESS identities are planned in this process, as a worker's start (a new
interpreter importing the engine: about half a second) costs more than it saves below
that. Each Job reads its own account, as a sign-in does: reading a chunk's accounts in
a few joined statements instead was measured no faster on SQLite.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from multiprocessing.util import Finalize
from pathlib import Path
from typing import Any, Literal

from engine.config import Config, load_config
from engine.provision import rules_from_source
from engine.recorded import BagError, Recorded, hidden_names, token_from_bag
from engine.result import REDACTED, Result
from engine.steps import CompiledRulesLike, Job
from engine.store import Store, layout_for, open_store
from engine.store.base import Transaction
from rules.ast import AttrRef

Verdict = Literal["change", "deny", "same"]
CHUNK = 2000  # identities per task
IN_PROCESS = 10_000  # fewer recorded identities than this are planned without workers
EXAMPLES = 3  # accounts named per group of changes


@dataclass(slots=True)
class AccountPlan:
    """What one identity's next sign-in would do under the planned rules."""

    subject: str
    user_id: int | None
    username: str | None  # the account's, "***" when redacted; null when there is none
    outcome: str  # created, updated, linked, unchanged or denied
    verdict: Verdict
    changes: dict[str, Any]  # as `apply --json` shows them (redacted)
    lines: dict[str, list[int]]  # changed field → the rules lines that set it
    message: str | None  # the deny message (redacted), when denied
    deny_line: int | None
    recorded_at: str
    recorded_outcome: str
    recorded_rules: str | None  # the sha256 of the rules its last sign-in ran

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "user_id": self.user_id,
            "username": self.username,
            "verdict": self.verdict,
            "outcome": self.outcome,
            "changes": self.changes,
            "lines": self.lines,
            "message": self.message,
            "deny_line": self.deny_line,
            "recorded_at": self.recorded_at,
            "recorded_outcome": self.recorded_outcome,
        }

    def __reduce__(self) -> tuple[type[AccountPlan], tuple[Any, ...]]:
        # Pickled (from a worker) as the class and its fields in order: a quarter of
        # the default's cost for a slotted dataclass, both ways.
        return AccountPlan, tuple(getattr(self, name) for name in _PLAN_FIELDS)


_PLAN_FIELDS = tuple(f.name for f in dataclasses.fields(AccountPlan))


@dataclass(slots=True)
class Group:
    """One kind of change and how many identities it touches: `+` a set member added,
    `-` one removed, `=` a field given `value`."""

    field: str
    op: str
    value: Any
    count: int = 0
    examples: list[str] = dataclasses.field(default_factory=list)

    @property
    def label(self) -> str:
        if self.op in "+-":
            return f"{self.field} {self.op}{self.value}"
        return f"{self.field} = {self.value}"

    def to_json(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "op": self.op,
            "value": self.value,
            "count": self.count,
            "examples": self.examples,
        }


@dataclass(slots=True)
class PlanReport:
    """The plan of one rules text over one connection's recorded sign-ins."""

    connection: str
    rules_sha256: str
    recorded: int = 0  # identities planned
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("change", "deny", "same"), 0)
    )
    outcomes: dict[str, int] = field(default_factory=dict)  # by the outcome they would have
    fields: dict[str, int] = field(default_factory=dict)  # changed field → identities
    groups: list[Group] = field(default_factory=list)  # the most common first
    accounts: list[AccountPlan] = field(default_factory=list)  # those that change or deny
    unreadable: int = 0  # recorded bags that could not be read back (skipped)
    warnings: list[str] = field(default_factory=list)

    @property
    def denies(self) -> bool:
        return self.counts["deny"] > 0

    def summary_json(self) -> dict[str, Any]:
        return {
            "connection": self.connection,
            "rules_sha256": self.rules_sha256,
            "recorded": self.recorded,
            "change": self.counts["change"],
            "deny": self.counts["deny"],
            "same": self.counts["same"],
            "outcomes": self.outcomes,
            "fields": self.fields,
            "groups": [g.to_json() for g in self.groups],
            "unreadable": self.unreadable,
            "warnings": self.warnings,
        }


def verdict_of(outcome: str, recorded_outcome: str) -> Verdict:
    if outcome == "denied":
        return "same" if recorded_outcome == "denied" else "deny"
    return "same" if outcome == "unchanged" else "change"


def cause_lines(result: Result) -> dict[str, list[int]]:
    """Each changed field's rules lines: the assignments that set a scalar; for a set,
    the operations that add a value it gains, or remove or replace away one it loses."""
    lines: dict[str, set[int]] = {}
    ops = result.plan.set_ops if result.plan is not None else []
    for name, change in result.changes.items():
        found = lines.setdefault(name, set())
        if not isinstance(change, dict):
            found.update(t.line for t in result.trace if t.field == name)
            continue
        mine = [op for op in ops if op.field == name]
        for value in change.get("added", []):
            found.update(
                op.line for op in mine if op.kind in ("add", "replace") and value in op.values
            )
        for value in change.get("removed", []):
            found.update(
                op.line
                for op in mine
                if (op.kind == "remove" and value in op.values)
                or (op.kind in ("replace", "clear") and value not in op.values)
            )
    return {name: sorted(found) for name, found in lines.items()}


def account_plan(result: Result, row: Recorded, username: str | None) -> AccountPlan:
    """An identity's plan from the result of its replayed sign-in; `username` is the
    account's (redacted), when there is one."""
    changes = result.redacted_changes()
    plan = result.plan
    denied = result.outcome == "denied"
    return AccountPlan(
        subject=REDACTED if _subject_hidden(result) else row.subject,
        user_id=result.user_id or row.user_id,
        username=username,
        outcome=result.outcome,
        verdict=verdict_of(result.outcome, row.outcome),
        changes=changes,
        lines=cause_lines(result),
        message=result.message if denied else None,
        deny_line=plan.deny_line if denied and plan is not None else None,
        recorded_at=row.at,
        recorded_outcome=row.outcome,
        recorded_rules=row.rules_sha256,
    )


def _subject_hidden(result: Result) -> bool:
    return "subject" in result.redact


class Planner:
    """Plans recorded sign-ins of one connection with one rules text (one per process)."""

    def __init__(self, config: Config, connection: str, source: str, store: Store) -> None:
        self.config = config
        self.conn = config.connection(connection)
        self.layout = layout_for(config)
        self.rules: CompiledRulesLike = rules_from_source(self.conn, config, source)
        self.store = store
        self.now = datetime.now(UTC)

    def plan_rows(self, rows: list[Recorded]) -> tuple[list[AccountPlan], Counter[str], int]:
        """The plans of `rows` (those that change or deny), the count of every outcome
        (and verdict, as "verdict:<v>"), and how many bags could not be read."""
        return self.store.atomic(lambda txn: self._plan(txn, rows), write=False)

    def _username(self, txn: Transaction, result: Result) -> str | None:
        """The account's username as shown: the planned one, else the stored one (a
        denied sign-in's account), "***" where the connection redacts usernames."""
        user = result.redacted_user()
        if user is not None:
            name = user.get("username")
            return None if name is None else str(name)
        if result.user_id is None:
            return None
        stored = txn.load_user(result.user_id)
        if stored is None or stored.fields.get("username") is None:
            return None
        return REDACTED if "username" in self.conn.redact else str(stored.fields["username"])

    def _plan(
        self, txn: Transaction, rows: list[Recorded]
    ) -> tuple[list[AccountPlan], Counter[str], int]:
        kept: list[AccountPlan] = []
        counts: Counter[str] = Counter()
        unreadable = 0
        layout, conn, rules, now = self.layout, self.conn, self.rules, self.now
        for row in rows:
            try:
                token = token_from_bag(row.bag)
            except BagError:
                unreadable += 1
                continue
            result = Job(layout, conn, rules, token, now, True).run(txn)
            verdict = verdict_of(result.outcome, row.outcome)
            counts[result.outcome] += 1
            counts[f"verdict:{verdict}"] += 1
            if verdict != "same":
                kept.append(account_plan(result, row, self._username(txn, result)))
        return kept, counts, unreadable


def attributes_read(program: object) -> set[str]:
    """The token attributes a compiled program reads (its `@name` references)."""
    found: set[str] = set()
    stack: list[object] = [program]
    while stack:
        node = stack.pop()
        if isinstance(node, AttrRef):
            found.add(node.name)
        elif isinstance(node, list | tuple):
            stack.extend(node)
        elif dataclasses.is_dataclass(node) and not isinstance(node, type):
            stack.extend(getattr(node, f.name) for f in dataclasses.fields(node))
    return found


_planners: dict[tuple[str, str, str], Planner] = {}  # a worker process's own


def _worker(
    config_path: str, connection: str, source: str, since: str | None, lo: str, hi: str
) -> tuple[list[AccountPlan], Counter[str], int]:
    """One worker process's chunk: the identities with keys from `lo` to `hi`. The
    config, the store and the compiled rules are the worker's first chunk's, kept for
    the others (a worker serves one plan)."""
    key = (config_path, connection, source)
    planner = _planners.get(key)
    if planner is None:
        for other in _planners.values():
            other.store.close()
        _planners.clear()
        config = load_config(config_path)
        store = open_store(config, read_only_if_missing=True)
        try:
            planner = Planner(config, connection, source, store)
        except BaseException:
            store.close()
            raise
        _planners[key] = planner
        Finalize(planner, store.close, exitpriority=10)
    rows = planner.store.recorded(connection, since, lo, hi)
    return planner.plan_rows(rows)


def plan(
    config: Config,
    connection: str,
    source: str,
    *,
    since: datetime | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PlanReport:
    """Plan `source` (rules text) over the connection's recorded sign-ins (those at or
    after `since`). Raises RulesError when the text does not compile, StoreError when
    the store fails. `progress(done, total)` is called as identities are planned."""
    from engine.store.values import iso

    after = iso(since) if since is not None else None
    store = open_store(config, read_only_if_missing=True)
    try:
        planner = Planner(config, connection, source, store)
        report = PlanReport(connection, planner.rules.sha256)
        keys = store.recorded_keys(connection, after)
        total = len(keys)
        workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
        results: Iterable[tuple[list[AccountPlan], Counter[str], int]]
        if total < IN_PROCESS or workers == 1:
            results = _in_process(planner, store, connection, after, keys, progress)
        else:
            results = _in_workers(config.path, connection, source, after, keys, workers, progress)
        for kept, counts, unreadable in results:
            _add(report, kept, counts, unreadable)
    finally:
        store.close()
    _finish(report, config, connection, planner.rules)
    return report


def _in_process(
    planner: Planner,
    store: Store,
    connection: str,
    after: str | None,
    keys: list[str],
    progress: Callable[[int, int], None] | None,
) -> Iterable[tuple[list[AccountPlan], Counter[str], int]]:
    done = 0
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start : start + CHUNK]
        rows = store.recorded(connection, after, chunk[0], chunk[-1])
        yield planner.plan_rows(rows)
        done += len(chunk)
        if progress is not None:
            progress(done, len(keys))


def _in_workers(
    config_path: Path,
    connection: str,
    source: str,
    after: str | None,
    keys: list[str],
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> Iterable[tuple[list[AccountPlan], Counter[str], int]]:
    size = max(500, min(CHUNK, -(-len(keys) // (workers * 4))))
    chunks = [keys[i : i + size] for i in range(0, len(keys), size)]
    # A worker starts afresh (spawn): nothing of this process's open store, threads or
    # locks is inherited.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {
            pool.submit(_worker, str(config_path), connection, source, after, c[0], c[-1]): len(c)
            for c in chunks
        }
        done = 0
        for future in as_completed(futures):
            yield future.result()
            done += futures[future]
            if progress is not None:
                progress(done, len(keys))


def _add(
    report: PlanReport, kept: list[AccountPlan], counts: Counter[str], unreadable: int
) -> None:
    report.accounts.extend(kept)
    report.unreadable += unreadable
    for name, n in counts.items():
        if name.startswith("verdict:"):
            report.counts[name.removeprefix("verdict:")] += n
            report.recorded += n
        else:
            report.outcomes[name] = report.outcomes.get(name, 0) + n


def _finish(report: PlanReport, config: Config, connection: str, rules: Any) -> None:
    """Order the accounts, group their changes, and say what makes the plan inexact."""
    report.accounts.sort(key=lambda a: (a.verdict != "deny", a.username or "", a.subject))
    groups: dict[tuple[str, str, str], Group] = {}
    fields: Counter[str] = Counter()
    for account in report.accounts:
        name = account.username or account.subject
        for field_name, change in account.changes.items():
            fields[field_name] += 1
            if isinstance(change, dict):
                pairs = [("+", v) for v in change.get("added", [])]
                pairs += [("-", v) for v in change.get("removed", [])]
            else:
                pairs = [("=", change[1])]
            for op, value in pairs:
                key = (field_name, op, repr(value))
                group = groups.get(key)
                if group is None:
                    group = groups[key] = Group(field_name, op, value)
                group.count += 1
                if len(group.examples) < EXAMPLES:
                    group.examples.append(name)
    report.fields = dict(sorted(fields.items(), key=lambda kv: (-kv[1], kv[0])))
    report.groups = sorted(groups.values(), key=lambda g: (-g.count, g.field, g.op, repr(g.value)))
    conn = config.connection(connection)
    program = getattr(rules, "program", None)
    hashed = sorted(hidden_names(conn) & attributes_read(program))
    if hashed:
        report.warnings.append(
            "the rules read "
            + ", ".join(hashed)
            + ", recorded only as keyed hashes (redacted): what depends on them is planned"
            " from the hashes; set record_redacted = true on the connection to plan them"
            " exactly"
        )
    if not conn.record:
        report.warnings.append(
            f"connection {connection!r} has record = false: no new sign-ins are recorded"
        )
    if report.unreadable:
        report.warnings.append(
            f"{report.unreadable} recorded sign-in(s) could not be read back and were skipped"
        )
