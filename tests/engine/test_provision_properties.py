"""Properties of the pipeline over generated tokens (hypothesis): applying a token twice
equals applying it once, and no attribute bag gives a traceback or a partial write."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

if str(Path(__file__).parent) not in sys.path:  # tests/engine is not an importable package
    sys.path.insert(0, str(Path(__file__).parent))
from provision_fixtures import Bench, sample, workspace

RULES = """\
deny "blocked" when "blocked" in @flags
username     = first(@uid)
email        = lower(first(@mail))
department  := first(@dept)
display_name = join([first(@given), first(@sn)], " ")
groups       = @groups
roles       += @roles
roles       -= @drop
rule "first" on create {
    active = true
}
rule "no groups" when count(@groups) == 0 {
    clear groups
}
"""
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

small_text = st.text(alphabet="abcAB-é ", min_size=0, max_size=4)
values = st.lists(small_text, max_size=3)
bags = st.fixed_dictionaries(
    {"uid": st.lists(st.sampled_from(["ann", "Ann", "bob", ""]), max_size=2)},
    optional={
        "mail": values,
        "dept": values,
        "given": values,
        "sn": values,
        "groups": values,
        "roles": values,
        "drop": values,
        "flags": st.lists(st.sampled_from(["blocked", "x"]), max_size=2),
        "weird name:é": values,
    },
)
subjects = st.sampled_from(["s1", "s2", "S1"])


def _account_state(bench: Bench) -> dict[str, Any]:
    """Accounts, members and links only (audit and replay entries aside)."""
    state = bench.snapshot()
    return state["users"]  # type: ignore[no-any-return]


def _attributes(bag: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: vals for name, vals in bag.items() if vals}


@SETTINGS
@given(first=bags, second=bags, subject=subjects)
def test_applying_the_same_token_twice_equals_applying_it_once(
    first: dict[str, list[str]], second: dict[str, list[str]], subject: str
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        bench = Bench(workspace(Path(folder), RULES))
        try:
            bench.apply(sample("s1", **_attributes(first)))  # some prior state
            token = sample(subject, **_attributes(second))  # no token_id: no replay check
            once = bench.apply(token)
            after_once = _account_state(bench)
            twice = bench.apply(token)
            assert _account_state(bench) == after_once
            if once.ok:
                assert twice.outcome == "unchanged"
                assert twice.user is not None and once.user is not None
                assert {**twice.user, "updated_at": None} == {**once.user, "updated_at": None}
            else:
                assert twice.outcome == once.outcome
        finally:
            bench.close()


@SETTINGS
@given(bag_list=st.lists(st.tuples(subjects, bags), min_size=1, max_size=4))
def test_random_attribute_bags_never_crash_or_write_partially(
    bag_list: list[tuple[str, dict[str, list[str]]]],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        bench = Bench(workspace(Path(folder), RULES))
        try:
            for n, (subject, bag) in enumerate(bag_list, 1):
                before = _account_state(bench)
                result = bench.apply(sample(subject, **_attributes(bag)))
                assert result.outcome in {"created", "updated", "unchanged", "denied"}
                assert bench.rows("SELECT count(*) FROM audit") == [(n,)]
                if result.outcome in ("denied", "unchanged"):
                    assert _account_state(bench) == before
                    continue
                assert result.user is not None
                shown = bench.user(result.user["username"])
                assert shown is not None and shown.id == result.user["id"]
                assert _account_state(bench) != before
        finally:
            bench.close()
