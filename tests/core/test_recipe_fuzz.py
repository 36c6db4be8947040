"""Property: every mutated recipe is refused by `temple validate` (exit 2, one line) or is
valid and runs -- none crashes later (hypothesis; see tests/testkit/fuzz.py).

Bounded for CI (``TEMPLE_FUZZ_EXAMPLES`` mutations, at most ``TEMPLE_FUZZ_RUNS`` of them run
select and generate on two tiny synthetic videos); ``benchmarks/recipe_fuzz.py`` runs the
long version, training included.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testkit.fuzz import base_recipe, check, fuzz_budget, recipe_texts, write_inputs

EXAMPLES, TRAIN, RUNS = fuzz_budget()
OUTCOMES: Counter = Counter()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return base_recipe(write_inputs(tmp_path_factory.mktemp("fuzz-videos")))


def test_the_base_recipe_runs(base):
    import yaml

    assert check(yaml.safe_dump(base).encode(), [], train_touched=False, run=True) == "ran"


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)
@given(data=st.data())
def test_mutated_recipes_are_refused_or_run(base, data):
    raw, done, train_touched = data.draw(recipe_texts(base))
    run = OUTCOMES["ran"] < RUNS
    outcome = check(raw, done, train_touched, run=run, train=TRAIN)
    OUTCOMES[outcome] += 1


def test_report_outcomes():
    """Not a check: what the fuzz saw (shown with -s; the benchmark reads it)."""
    print(f"recipe fuzz outcomes: {dict(OUTCOMES)}")
