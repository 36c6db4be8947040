"""The built-in perturbations against SPEC §3, through the plugin manager."""

import math
import random

import pytest

from temple_core.generation.perturb import contiguous_groups, keep_count
from temple_core.plugins import get_plugin_manager

NS = range(1, 65)
RS = (1, 2, 4, 8, 16)


def build(name, **options):
    pm = get_plugin_manager()
    component = pm.get("perturbations", name)
    return pm.build("perturbations", name, component.options(**options))


@pytest.mark.parametrize("variant", ["released", "paper"])
def test_drop_counts_and_order(variant):
    drop = build("drop", variant=variant)
    for n in NS:
        items = [f"c{i}" for i in range(n)]
        for r in RS:
            out = drop(items, r, random.Random(n * 100 + r))
            expected = max(1, n // r) if variant == "released" else max(1, math.ceil(n / r))
            assert len(out.items) == expected
            assert out.kept_indices == sorted(out.kept_indices), "drop keeps the original order"
            assert len(set(out.kept_indices)) == expected
            assert out.items == [items[i] for i in out.kept_indices]


@pytest.mark.parametrize("name", ["shuffle", "reverse"])
@pytest.mark.parametrize("variant", ["released", "paper"])
def test_group_perturbations_keep_multiset_and_group_order(name, variant):
    perturb = build(name, variant=variant)
    for n in NS:
        items = list(range(100, 100 + n))
        for r in RS:
            out = perturb(items, r, random.Random(7))
            assert sorted(out.items) == items, "every clip kept exactly once"
            assert out.items == [items[i] for i in out.kept_indices]
            groups = contiguous_groups(n, r, variant)
            if variant == "released":
                size = max(1, n // r)
                assert all(len(g) == size for g in groups[:-1]) and 1 <= len(groups[-1]) <= size
                assert len(groups) == math.ceil(n / size)
            else:
                assert len(groups) == min(n, max(1, math.ceil(n / r)))
                assert max(map(len, groups)) - min(map(len, groups)) <= 1
            # The output is the groups, each intact and in order, in some group order.
            position, seen = 0, []
            for _ in groups:
                start = out.kept_indices[position]
                group = next(g for g in groups if g[0] == start)
                assert out.kept_indices[position : position + len(group)] == group
                seen.append(groups.index(group))
                position += len(group)
            assert sorted(seen) == list(range(len(groups)))
            if name == "reverse":
                assert seen == list(reversed(range(len(groups))))


def test_released_example_from_spec():
    # N = 5, r = 2: groups of 2 -> [0,1] [2,3] [4]; reversed -> [4, 2, 3, 0, 1].
    assert build("reverse")(list("abcde"), 2, random.Random(0)).kept_indices == [4, 2, 3, 0, 1]
    assert contiguous_groups(5, 2) == [[0, 1], [2, 3], [4]]
    assert contiguous_groups(5, 2, "paper") == [[0, 1], [2, 3], [4]]  # ceil(5/2) = 3 groups
    assert contiguous_groups(5, 4, "paper") == [[0, 1, 2], [3, 4]]  # 2 groups
    assert contiguous_groups(5, 4) == [[0], [1], [2], [3], [4]]  # groups of max(1, 5 // 4)
    # Larger r is the stronger perturbation in the released reading: more, smaller groups.
    assert len(contiguous_groups(32, 16)) > len(contiguous_groups(32, 2))
    assert keep_count(32, 16) < keep_count(32, 2)


@pytest.mark.parametrize("name", ["drop", "shuffle", "reverse"])
def test_same_seed_same_output(name):
    perturb = build(name)
    items = list(range(20))
    for r in RS:
        a = perturb(items, r, random.Random(123))
        b = perturb(items, r, random.Random(123))
        assert a.kept_indices == b.kept_indices and a.items == b.items
    assert items == list(range(20)), "input untouched"


def test_shuffle_really_shuffles_and_avoid_identity():
    plain = build("shuffle")
    outs = {tuple(plain(list(range(8)), 8, random.Random(s)).kept_indices) for s in range(30)}
    assert len(outs) > 10
    strict = build("shuffle", avoid_identity=True)
    for seed in range(50):
        assert strict(list(range(4)), 2, random.Random(seed)).kept_indices == [2, 3, 0, 1]


def test_bad_difficulty():
    with pytest.raises(ValueError, match="difficulty r must be >= 1"):
        build("drop")([1, 2, 3], 0, random.Random(0))


def test_third_party_swap_halves_runs():
    out = build("swap-halves")(list("abcdef"), 16, random.Random(0))
    assert out.items == list("defabc") and out.kept_indices == [3, 4, 5, 0, 1, 2]


@pytest.mark.parametrize("returned, message", [
    (lambda items: list(reversed(items)), r"perturbation 'mine' at r=2 returned list \[3, 2, 1, 0\]; a perturbation returns temple_core\.records\.Perturbed"),
    (lambda items: None, r"perturbation 'mine' at r=2 returned NoneType None; a perturbation returns"),
    (lambda items: _perturbed(items[::-1], [0, 1, 2, 3]), r"returned kept_indices \[0, 1, 2, 3\] that do not match its items \[3, 2, 1, 0\] for 4 clips"),
    (lambda items: _perturbed(items, ["a", "b", "c", "d"]), r"returned a Perturbed whose kept_indices are not clip indices"),
])
def test_a_perturbation_returning_the_wrong_thing_is_a_one_line_plugin_error(returned, message):
    """A third-party perturbation's mistake names it (was: an AttributeError traceback deep in
    generate for a plain list)."""
    from temple_core.errors import PluginError
    from temple_core.generation.plan import plan_variants

    with pytest.raises(PluginError, match=message):
        plan_variants(4, [("mine", lambda items, r, rng: returned(items))], [2], random.Random(0))


def _perturbed(items, kept):
    from temple_core.records import Perturbed

    return Perturbed(items=list(items), kept_indices=kept)
