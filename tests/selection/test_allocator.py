"""``temple_core.allocator.reuse_freed_memory``: inside it a freed large tensor's memory is
reused (no page faults for the next one), after it the memory goes back to the system, and
TransNetV2's probabilities are the same with it or without (glibc, as on this machine)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from temple_core.video.source import VideoSource
from temple_plugins.shot_detectors.transnetv2 import TransNetV2Detector

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
CHECK = textwrap.dedent(
    """
    import resource
    import torch
    from temple_core.allocator import reuse_freed_memory

    MB = 1024 * 1024
    SIZE = 200 * MB
    PAGES = SIZE // resource.getpagesize()

    def faults_of_a_fresh_tensor(size=SIZE):
        # Minor page faults while a new tensor is written (then freed).
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = torch.empty(size, dtype=torch.uint8)
        t.fill_(1)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        del t
        return faults

    def resident_mib():
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * resource.getpagesize() / MB

    faults_of_a_fresh_tensor()
    assert faults_of_a_fresh_tensor(SIZE - 8 * MB) > PAGES // 2  # the default: every page faulted in again
    baseline = resident_mib()
    with reuse_freed_memory() as active:
        assert active
        faults_of_a_fresh_tensor()
        # A slightly smaller one fits in the freed block (whatever small allocations came
        # between), as the next forward's activations do: reused, not faulted in again.
        assert faults_of_a_fresh_tensor(SIZE - 8 * MB) < PAGES // 20
        assert resident_mib() > baseline + 150  # ... because it was kept
    assert resident_mib() < baseline + 50  # handed back after the block
    faults_of_a_fresh_tensor()
    assert faults_of_a_fresh_tensor(SIZE - 8 * MB) > PAGES // 2  # and the default behaviour is back
    with reuse_freed_memory(enabled=False) as active:
        assert not active
    print("ok")
    """
)


def test_freed_memory_is_reused_inside_and_returned_after():
    """In a fresh interpreter, as a ``temple`` process starts (glibc's state is process-wide,
    and a test process's history of allocations is not a user's)."""
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout[-2000:] + done.stderr[-3000:]


def test_transnetv2_probabilities_are_the_same_with_and_without(videos_dir):
    video = videos_dir / "cuts.mp4"
    kept = TransNetV2Detector().probabilities(VideoSource(video))
    plain = TransNetV2Detector(TransNetV2Detector.Options(reuse_freed_memory=False)).probabilities(VideoSource(video))
    for a, b in zip(kept, plain):
        np.testing.assert_array_equal(a, b)
