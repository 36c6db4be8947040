"""Ground-truth sidecars (``<video>.json``): the list's order is the true order every evaluator
scores against, so a sidecar whose start times disagree with it is refused, naming the file."""

from __future__ import annotations

import json

import pytest

from temple_core.errors import TempleError
from temple_core.evaluation.truth import read_events, read_sidecar


def sidecar(tmp_path, events):
    path = tmp_path / "v.json"
    path.write_text(json.dumps({"events": events}))
    return path


def test_events_in_order_are_read_as_listed(tmp_path):
    path = sidecar(tmp_path, [{"description": "a", "start": 0, "end": 1}, {"description": "b", "start": 1.0, "end": 2},
                              {"description": "c"}, {"description": "d", "start": 2.5}])
    assert read_sidecar(path) == ["a", "b", "c", "d"]
    assert [e.get("start") for e in read_events(path)] == [0, 1.0, None, 2.5]
    assert read_sidecar(sidecar(tmp_path, ["plain text", "another"])) == ["plain text", "another"]


def test_events_out_of_time_order_are_refused(tmp_path):
    path = sidecar(tmp_path, [{"description": "a", "start": 0}, {"description": "b", "start": 3}, {"description": "c", "start": 1.5}])
    with pytest.raises(TempleError, match=r"v\.json: events must be listed in time order, but event 2 starts at 1\.5 s, before event 1 \(3 s\)"):
        read_events(path)


@pytest.mark.parametrize("events, message", [
    ([{"description": "a", "start": "soon"}], r"v\.json: event 0's start is not a finite number of seconds: 'soon'"),
    ([{"description": "a", "start": 0}, {"description": "b", "start": float("nan")}], r"event 1's start is not a finite number of seconds: nan"),
    ([{"description": "a", "start": "1.5"}], r"event 0's start is not a finite number of seconds: '1.5'"),
    ([{"description": " "}], r"v\.json: every event needs a non-empty description"),
    ([{"start": 0}], r"v\.json: not a ground-truth sidecar"),
])
def test_bad_sidecars_name_the_file(tmp_path, events, message):
    with pytest.raises(TempleError, match=message):
        read_events(sidecar(tmp_path, events))
