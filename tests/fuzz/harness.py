"""What every fuzz target shares: the bounds, measuring one call, and findings.

A target's `check(data)` runs an input through jitprov with `run`, which measures
the call's CPU time (`time.process_time`) and its peak memory, and turns an exception
the target does not allow into a `Finding`. A call over the CPU bound (by less than three
times) is measured again, up to three more times after a garbage collection, taking the
least, before it is called a finding, so that a collection or a cold cache charged to
one input does not flake.

Memory is the growth of the process's peak resident set during the call: Linux's
`VmHWM` after resetting it through `/proc/self/clear_refs` (cheap: two small /proc
reads and a write per call). Unlike tracemalloc it sees libxml2's and OpenSSL's
allocations, and costs nothing per allocation; it can only under-count (memory the
process already holds and re-uses does not show), never over-count. Where /proc cannot
be used the memory bound is not checked per input; libFuzzer's `-rss_limit_mb` remains.
"""

from __future__ import annotations

import gc
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.config import Connection
    from engine.token import Token, TokenRejected

ROOT = Path(__file__).resolve().parents[2]
REGRESSIONS = Path(__file__).resolve().parent / "regressions"
# The shared third-party corpus, as `../shared/corpus` from the repo root.
CORPUS = ROOT.parent / "shared" / "corpus"
MiB = 1 << 20


@dataclass(frozen=True, slots=True)
class Limits:
    cpu: float  # seconds of CPU one call may take
    memory: int  # bytes of peak resident-set growth one call may cause


# product.md §2 "Cost before trust": 50 ms of CPU and 64 MiB of memory.
FUZZ_LIMITS = Limits(cpu=0.050, memory=64 * MiB)
# Replaying regressions under pytest (make test, CI under load): ten times the CPU. The
# memory bound stays: load does not inflate a peak, and it can only under-count.
TEST_LIMITS = Limits(cpu=0.500, memory=64 * MiB)

# The reason codes of product.md §2 steps 2 and 3, written out from the spec rather than
# imported from engine.token, so that a code the engine makes up is a finding.
SPEC_REASONS = frozenset(
    {
        "too-large",
        "malformed",
        "dtd",
        "idp-error",
        "decryption-failed",
        "unsigned",
        "bad-signature",
        "untrusted-signer",
        "unsupported",
        "signature-wrapping",
        "wrong-issuer",
        "wrong-request",
        "wrong-audience",
        "wrong-recipient",
        "not-yet-valid",
        "expired",
        "wrong-nonce",
        "replay",
    }
)


class Finding(AssertionError):
    """An input broke an invariant. `signature` names the cause coarsely (target, kind,
    and where or which case), so that the fuzzer can skip causes already saved as
    regressions and keep looking for new ones."""

    def __init__(self, target: str, kind: str, detail: str, key: str = "") -> None:
        super().__init__(f"{target}: {kind}: {detail}")
        self.target = target
        self.kind = kind
        # CPU and memory findings of one call and outcome are one cause.
        cause = "cost" if kind in ("cpu", "memory") else kind
        self.signature = f"{target}:{cause}:{key}"


@dataclass(slots=True)
class Call:
    """One measured call: its value or the exception it raised, and what it cost."""

    value: Any
    error: Exception | None
    cpu: float
    memory: int | None


def run(
    target: str,
    what: str,
    fn: Callable[[], Any],
    *,
    limits: Limits,
    allowed: tuple[type[Exception], ...] = (),
    key: Callable[[Call], str] | None = None,
) -> Call:
    """Call `fn` once, measured. An exception not in `allowed` is a finding; so is a
    call over `limits` (after re-measuring). `key` groups cost findings into causes (e.g.
    by the call and the token's form and reason; `what` by default)."""
    call = _once(fn)
    if call.error is not None and not isinstance(call.error, allowed):
        raise crash(target, what, call.error)
    runs = 1
    # Over the CPU bound by less than 3x may be a collection or a cold cache: measure
    # again, up to three times, and take the least. Far over it is not noise. (Memory is
    # not re-measured for itself: load does not inflate it, and it can only under-count.)
    while limits.cpu < call.cpu < 3 * limits.cpu and runs < 4:
        gc.collect()
        again = _once(fn)
        runs += 1
        call.cpu = min(call.cpu, again.cpu)
        if call.memory is not None and again.memory is not None:
            call.memory = min(call.memory, again.memory)
    group = key(call) if key else what
    if call.cpu > limits.cpu:
        raise Finding(
            target,
            "cpu",
            f"{what} took {call.cpu * 1000:.1f} ms of CPU (bound {limits.cpu * 1000:.0f} ms; "
            f"least of {runs} runs){_outcome(call)}",
            group,
        )
    if call.memory is not None and call.memory > limits.memory:
        raise Finding(
            target,
            "memory",
            f"{what} grew the peak resident set by {call.memory / MiB:.1f} MiB "
            f"(bound {limits.memory // MiB} MiB; least of {runs} runs){_outcome(call)}",
            group,
        )
    return call


def crash(target: str, what: str, error: BaseException) -> Finding:
    """A Finding for an exception the target does not allow, chained to it."""
    finding = Finding(
        target,
        "exception",
        f"{what} raised {type(error).__name__}: {str(error)[:500]}",
        f"{type(error).__name__}@{where(error.__traceback__, deepest=isinstance(error, RecursionError))}",
    )
    finding.__cause__ = error
    return finding


def where(tb: TracebackType | None, *, deepest: bool = False) -> str:
    """The innermost frame of jitprov's own code (engine, rules, tui) in a traceback,
    as `path:function`; else the innermost frame. Function names, not lines: lines move
    with every edit, and the signature must survive them. With `deepest` (a
    RecursionError, which may strike anywhere in the recursion), the most repeated of
    jitprov's frames instead: the function that recurses."""
    mine: list[str] = []
    last = ""
    while tb is not None:
        code = tb.tb_frame.f_code
        path = Path(code.co_filename)
        last = f"{path.name}:{code.co_name}"
        try:
            relative = path.resolve().relative_to(ROOT)
        except ValueError:
            relative = None
        if relative is not None and relative.parts[0] in ("engine", "rules", "tui"):
            mine.append(f"{relative.as_posix()}:{code.co_name}")
        tb = tb.tb_next
    if mine and deepest:
        return Counter(mine).most_common(1)[0][0]
    return mine[-1] if mine else last


_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


def bad_text(value: object) -> str | None:
    """Why `value` is text a token must never yield (product.md §2: a NUL or a lone
    surrogate makes the token malformed), or None when it is fine."""
    if not isinstance(value, str):
        return f"not text: {type(value).__name__}"
    found = _BAD_TEXT.search(value)
    if found is None:
        return None
    return f"holds U+{ord(found.group()):04X} at {found.start()}: {value[:80]!r}"


def check_rejected(target: str, error: TokenRejected) -> None:
    """A rejection: a product.md §2 reason, a message, a claimed subject that can be
    shown and stored (the audit row keeps it)."""
    if error.reason not in SPEC_REASONS:
        raise Finding(target, "reason", f"reason {error.reason!r} is not a §2 code", error.reason)
    if not isinstance(error.message, str) or not error.message:
        raise Finding(target, "rejected", f"no message for {error.reason}", "message")
    if error.subject is not None and (problem := bad_text(error.subject)):
        raise Finding(target, "rejected", f"claimed subject {problem}", "subject")


def check_token(target: str, token: Token, connection: Connection, kind: str) -> None:
    """An accepted token: what the pipeline relies on (product.md §2)."""

    def fail(key: str, detail: str) -> Finding:
        return Finding(target, "accepted", f"{detail} (accepted token)", key)

    if token.kind != kind:
        raise fail("kind", f"kind {token.kind!r}")
    if token.issuer != connection.issuer:
        raise fail("issuer", f"issuer {token.issuer!r} is not the connection's")
    if connection.subject_from is None and not token.name_id:
        raise fail("name_id", "no subject")
    for label in ("name_id", "name_id_format", "issuer", "authn_context", "token_id"):
        value = getattr(token, label)
        if value is not None and (problem := bad_text(value)):
            raise fail(label, f"{label} {problem}")
    for name, values in token.attributes.items():
        if not name or (problem := bad_text(name)):
            raise fail("attribute-name", f"attribute name {problem or 'empty'}")
        if not isinstance(values, list):  # [] is fine: an absent attribute is [] anyway
            raise fail("attribute-values", f"attribute {name!r}: {values!r} is not a list")
        for value in values:
            if value == "" or (problem := bad_text(value)):
                raise fail("attribute-value", f"attribute {name!r}: {problem or 'empty value'}")
    if token.expires_at is not None and token.expires_at.tzinfo is None:
        raise fail("expires_at", "expires_at without a zone")


def _outcome(call: Call) -> str:
    if call.error is None:
        return ""
    reason = getattr(call.error, "reason", None)
    return f"; it raised {type(call.error).__name__}" + (f" ({reason})" if reason else "")


def _once(fn: Callable[[], Any]) -> Call:
    before = _reset_peak()
    start = time.process_time()
    try:
        value, error = fn(), None
    except Exception as exc:
        value, error = None, exc
    cpu = time.process_time() - start
    peak = _status("VmHWM") if before is not None else None
    memory = None if before is None or peak is None else max(0, peak - before)
    return Call(value, error, cpu, memory)


_PEAK_RESETTABLE: bool | None = None


def _reset_peak() -> int | None:
    """Reset the peak resident set to the current one; the current one, in bytes (None
    when /proc does not allow it)."""
    global _PEAK_RESETTABLE
    if _PEAK_RESETTABLE is False:
        return None
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        _PEAK_RESETTABLE = False
        return None
    _PEAK_RESETTABLE = True
    return _status("VmRSS")


def _status(field: str) -> int | None:
    try:
        with open("/proc/self/status", "rb") as handle:
            text = handle.read()
    except OSError:
        return None
    found = re.search(rb"^" + field.encode() + rb":\s+(\d+) kB", text, re.M)
    return int(found.group(1)) * 1024 if found else None


def corpus_tokens(kind: str) -> list[Path]:
    """The token files of the shared corpus's cases of one `kind` (MANIFEST.toml's
    `saml-response`, `oidc-id-token`); none when the corpus is not there."""
    import tomllib

    manifest = CORPUS / "MANIFEST.toml"
    if not manifest.is_file():
        return []
    cases = tomllib.loads(manifest.read_text(encoding="utf-8")).get("case", [])
    return sorted({CORPUS / case["path"] for case in cases if case.get("kind") == kind})
