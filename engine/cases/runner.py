"""Run rule test cases: each against a fresh store, in parallel when there are many.

A case is decoded with the same intake (`read_token`) and provisioned with the same
`Provisioner` as `jitprov apply`; only the store differs (a fresh temporary one, seeded
from `[given]`). Rules are compiled once per connection per process. Past
`MIN_PER_WORKER` cases per worker, chunks go to a process pool; results come back in the order of
the input (sorted paths), whatever order the workers finish in.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from datetime import UTC, datetime
from pathlib import Path

from engine.cases.model import CASE_SUFFIX, Case, CaseError, case_name, load_case
from engine.cases.seed import StoreFactory, seed
from engine.cases.verdict import Actual, CaseResult, Problem, Status, account_values, judge
from engine.config import Config, ConfigError, Connection
from engine.intake import read_token
from engine.provision import CompiledRulesLike, Provisioner, RulesError, load_rules
from engine.result import Result
from engine.steps import subject_of
from engine.store import SqliteStore, StoreError
from engine.token import TokenRejected

# A pool costs some 0.1-0.2 s (fork, a rules compile per worker) while a case costs about
# 0.6 ms of CPU: below some 200 cases a worker, one process finishes first.
MIN_PER_WORKER = 200
CHUNKS_PER_WORKER = 4  # small enough chunks to balance, large enough to amortise

Item = tuple[Path, str]  # (case file, the path as shown)


def discover(paths: Iterable[Path], *, shown: Callable[[Path], str] = str) -> list[Item]:
    """Every `*.case.toml` under `paths` (files are taken as given), sorted by path.

    Raises FileNotFoundError naming a path that does not exist.
    """
    found: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found.update(p.resolve() for p in path.rglob(f"*{CASE_SUFFIX}") if p.is_file())
        elif path.is_file():
            found.add(path.resolve())
        else:
            raise FileNotFoundError(str(path))
    return [(p, shown(p)) for p in sorted(found)]


def select(items: Sequence[Item], pattern: str | None) -> list[Item]:
    """`-k`: the cases whose name or shown path contains `pattern`, case-insensitively."""
    if not pattern:
        return list(items)
    needle = pattern.casefold()
    return [(p, s) for p, s in items if needle in case_name(p).casefold() or needle in s.casefold()]


class CaseRunner:
    """Runs cases of one config in this process; reuse it for many cases."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._rules: dict[str, CompiledRulesLike | RulesError] = {}
        self._stores: StoreFactory | None = None

    def close(self) -> None:
        if self._stores is not None:
            self._stores.close()
            self._stores = None

    def _load_rules(self, conn: Connection, config: Config) -> CompiledRulesLike:
        cached = self._rules.get(conn.id)
        if cached is None:
            try:
                cached = load_rules(conn, config)
            except RulesError as exc:
                cached = exc
            self._rules[conn.id] = cached
        if isinstance(cached, RulesError):
            raise cached
        return cached

    def _rules_label(self, conn: Connection) -> str:
        try:
            return f"{conn.rules.relative_to(self.config.root).as_posix()}:"
        except ValueError:
            return f"{conn.rules.as_posix()}:"

    def run_path(self, path: Path, shown: str) -> CaseResult:
        """Load and run one case file; a broken file or rules give status `error`."""
        started = time.perf_counter()
        name = case_name(path)
        try:
            result = self.run(load_case(path, self.config, shown))
        except CaseError as exc:
            result = CaseResult(name, shown, "error", [Problem(exc.key, str(exc))])
        except (RulesError, ConfigError, StoreError) as exc:
            result = CaseResult(name, shown, "error", [Problem(None, f"{shown}: {exc}")])
        except Exception as exc:  # a bug must not stop the other cases
            message = f"{shown}: internal error: {type(exc).__name__}: {exc}"
            result = CaseResult(name, shown, "error", [Problem(None, message)])
        result.seconds = time.perf_counter() - started
        result.file = str(path)
        return result

    def run(self, case: Case) -> CaseResult:
        """Run one checked case against a fresh store and judge the result."""
        conn = self.config.connection(case.connection)
        if self._stores is None:
            self._stores = StoreFactory(self.config)
        store = self._stores.fresh()
        provisioner = Provisioner(self.config, store=store, rules_loader=self._load_rules)
        result, given_id = self._provision(provisioner, conn, case, store)
        user_id = result.user_id or given_id
        user = store.load_user(user_id) if user_id is not None else None
        assigned = list(dict.fromkeys(t.field for t in result.trace))
        actual = Actual(
            result.outcome,
            result.reason,
            result.message,
            account_values(user, dict(self.config.fields)),
            assigned,
        )
        problems = judge(case, result, actual, case.user is not None, self._rules_label(conn))
        status: Status = "failed" if problems else "passed"
        return CaseResult(case.name, case.label, status, problems, actual=actual)

    def _provision(
        self, provisioner: Provisioner, conn: Connection, case: Case, store: SqliteStore
    ) -> tuple[Result, int | None]:
        """`Provisioner.apply`, split so the store can be seeded once the subject is
        known: the token is decoded once, as apply would (rules compiled first)."""
        rules = provisioner.rules(conn.id)
        now = case.at or datetime.now(UTC)
        try:
            token = read_token(
                case.token,
                conn,
                now=now,
                request_id=case.request_id,
                nonce=case.nonce,
                allow_samples=case.unsigned,
            )
        except TokenRejected as exc:
            given = seed(store, conn, case.user, case.accounts, None, now)
            rejected = provisioner.reject(
                conn, exc.reason, exc.message, now=now, dry_run=False, subject=exc.subject
            )
            return rejected, given
        subject, _ = subject_of(conn, token)
        given = seed(store, conn, case.user, case.accounts, subject, now)
        return provisioner.apply_token(conn, token, now=now, rules=rules), given


# -- parallel execution --------------------------------------------------------------

_worker: CaseRunner | None = None


def _init_worker(config: Config) -> None:
    global _worker
    _worker = CaseRunner(config)


def _run_chunk(items: list[Item]) -> list[CaseResult]:
    assert _worker is not None
    return [_worker.run_path(path, shown) for path, shown in items]


def run_cases(
    config: Config,
    items: Sequence[Item],
    *,
    jobs: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    min_per_worker: int = MIN_PER_WORKER,
) -> list[CaseResult]:
    """Run `items` (from `discover`) and return their results in the same order.

    `jobs`: worker processes at most (default: the idle CPUs; 1 runs everything here);
    each worker gets at least `min_per_worker` cases, so a small run stays in this
    process.
    `on_progress(n)` is told each time n more cases are done.
    """
    workers = min(jobs if jobs is not None else idle_cpus(), len(items) // min_per_worker)
    if workers <= 1:
        runner = CaseRunner(config)
        results = []
        try:
            for path, shown in items:
                results.append(runner.run_path(path, shown))
                if on_progress:
                    on_progress(1)
        finally:
            runner.close()
        return results
    size = max(1, -(-len(items) // (workers * CHUNKS_PER_WORKER)))
    chunks = [list(items[i : i + size]) for i in range(0, len(items), size)]
    done: dict[int, list[CaseResult]] = {}
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(config,)) as pool:
        futures: dict[Future[list[CaseResult]], int] = {
            pool.submit(_run_chunk, chunk): index for index, chunk in enumerate(chunks)
        }
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                done[futures[future]] = future.result()
                if on_progress:
                    on_progress(len(done[futures[future]]))
    return [result for index in range(len(chunks)) for result in done[index]]


def idle_cpus() -> int:
    """The CPUs not kept busy by other work (from the 1-minute load average), at least 1.

    Extra workers only help when there are idle CPUs to run them: on a busy machine the
    scheduler does not give this run more CPU for having more processes, and the pool
    only adds its own cost. Results are the same either way; only the speed differs.
    """
    cpus = available_cpus()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        return cpus
    return max(1, min(cpus, round(cpus - load)))


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1
