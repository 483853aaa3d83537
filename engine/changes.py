"""From a plan to a write: what one token changes in an account, as rows and as a report.

Pure functions over the stored account and the plan (no store access), so dry runs,
explain and the real write compute exactly the same thing. Set members carry their
source (product.md §4): `=`/`:=`/`clear` replace only this connection's members, `-=`
removes a value whatever its source, and the report (`changes`) is about the distinct
values users see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from engine.store.base import Member, StoredUser, UserWrite
from engine.store.schema import Layout
from engine.store.values import to_column
from rules.plan import Plan, Scalar, SetOp

JsonValue = str | int | float | bool | None


@dataclass(slots=True)
class Planned:
    """The write for one token, the `changes` report, and the account afterwards."""

    write: UserWrite
    changes: dict[str, object] = field(default_factory=dict)
    fields: dict[str, Scalar] = field(default_factory=dict)
    members: dict[str, set[Member]] = field(default_factory=dict)


def json_value(value: Scalar) -> JsonValue:
    """A field value for JSON: decimals as numbers (integral ones as integers)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def clean(value: Scalar) -> Scalar:
    """Empty text is no value (rules-language.md §3)."""
    return None if value == "" else value


def plan_write(stored: StoredUser | None, plan: Plan, connection: str, layout: Layout) -> Planned:
    """What applying `plan` for `connection` does to `stored` (None: a creation)."""
    scalars = layout.scalars
    before = stored.fields if stored else dict.fromkeys(scalars)
    write = UserWrite()
    planned = Planned(write, fields=dict(before))
    after_fields, changes = planned.fields, planned.changes
    for name, raw in plan.fields.items():
        if name not in scalars:
            continue
        new, old = clean(raw), before.get(name)
        if (new == old and type(new) is type(old)) or to_column(new) == to_column(old):
            continue
        write.fields[name] = after_fields[name] = new
        changes[name] = [json_value(old), json_value(new)]
    ops: dict[str, list[SetOp]] = {}
    for op in plan.set_ops:
        if op.field in ops:
            ops[op.field].append(op)
        else:
            ops[op.field] = [op]
    for name in layout.sets:
        rows = stored.members.get(name, set()) if stored else set()
        if name not in ops:  # untouched: share the stored rows, nothing to compare
            planned.members[name] = rows
            continue
        after = apply_set_ops(rows, ops[name], connection)
        planned.members[name] = after
        if after == rows:
            continue
        insert, delete = after - rows, rows - after
        if insert:
            write.insert[name] = sorted(insert)
        if delete:
            write.delete[name] = sorted(delete)
        old_values = {v for v, _ in rows}
        new_values = {v for v, _ in after}
        if old_values != new_values:
            changes[name] = {
                "added": sorted(new_values - old_values),
                "removed": sorted(old_values - new_values),
            }
    return planned


def apply_set_ops(rows: set[Member], ops: list[SetOp], connection: str) -> set[Member]:
    """A set's member rows after `ops`, in file order (rules-language.md §7)."""
    for op in ops:
        values = {v for v in op.values if v != ""}
        kind = op.kind
        if kind == "replace" or kind == "clear":
            rows = {r for r in rows if r[1] != connection}
            if kind == "replace":
                rows.update((v, connection) for v in values)
        elif kind == "add":
            rows = rows | {(v, connection) for v in values}
        elif kind == "remove":
            rows = {r for r in rows if r[0] not in values}
    return rows
