"""PySceneDetect's content and adaptive detectors, fed from our own PyAV decoding.

The detectors see exactly what PySceneDetect's ``SceneManager`` would give them: BGR frames
downscaled so that the width is between ``min_width`` and 1.5x that (its
``compute_downscale_factor`` rule), one frame at a time, then ``post_process`` at the end.
A cut at frame ``c`` starts a new shot at ``c``.
"""

from __future__ import annotations

from typing import Literal

import attrs
from temple_core.contracts import ShotDetector
from temple_core.errors import VideoError
from temple_core.hookspecs import hookimpl
from temple_core.records import ShotDetection


def _frame_num(timecode) -> int:
    value = getattr(timecode, "frame_num", None)
    if value is None:
        value = timecode.get_frames()
    return int(value)


class PySceneDetectDetector(ShotDetector):
    """PySceneDetect content / adaptive shot detection on frames decoded by PyAV."""

    @attrs.define(kw_only=True)
    class Options:
        #: PySceneDetect's ``content`` or ``adaptive`` detector.
        detector: Literal["content", "adaptive"] = attrs.field(
            default="content", validator=attrs.validators.in_(["content", "adaptive"])
        )
        # content: threshold on the HSV frame-difference score (PySceneDetect's default 27).
        threshold: float = attrs.field(default=27.0, validator=attrs.validators.gt(0.0))
        # adaptive: ratio of a frame's score to its neighbours' average (default 3).
        adaptive_threshold: float = attrs.field(default=3.0, validator=attrs.validators.gt(0.0))
        #: AdaptiveDetector: minimum content change for a cut.
        min_content_val: float = attrs.field(default=15.0, validator=attrs.validators.ge(0.0))
        #: AdaptiveDetector: frames on each side of the rolling average.
        window_width: int = attrs.field(default=2, validator=attrs.validators.ge(1))
        # Frames; PySceneDetect's default is 15. Selection's own 8-frame rule applies later.
        min_scene_len: int = attrs.field(default=15, validator=attrs.validators.ge(1))
        #: Compare brightness only (ignore colour).
        luma_only: bool = False
        #: Frames are downscaled to a width between this and 1.5x it (PySceneDetect's own rule).
        min_width: int = attrs.field(default=256, validator=attrs.validators.ge(16))

    def __init__(self, options: PySceneDetectDetector.Options | None = None):
        self.options = options or self.Options()

    def _make(self):
        from scenedetect.detectors import AdaptiveDetector, ContentDetector

        o = self.options
        if o.detector == "content":
            return ContentDetector(threshold=o.threshold, min_scene_len=o.min_scene_len, luma_only=o.luma_only)
        return AdaptiveDetector(
            adaptive_threshold=o.adaptive_threshold,
            min_scene_len=o.min_scene_len,
            window_width=o.window_width,
            min_content_val=o.min_content_val,
            luma_only=o.luma_only,
        )

    def _size(self, video) -> tuple[int | None, int | None]:
        if video.width < self.options.min_width:
            return None, None
        factor = video.width / float(self.options.min_width)
        return max(1, round(video.width / factor)), max(1, round(video.height / factor))

    def detect(self, video) -> ShotDetection:
        from scenedetect.common import FrameTimecode

        detector = self._make()
        width, height = self._size(video)
        cuts: list[int] = []
        count = 0
        timecode = None
        # PySceneDetect works on BGR (OpenCV's order): ask the decoder for it directly.
        fps = video.fps
        # With ``decode_worker`` on, the frames are decoded in another process meanwhile: this
        # loop is the detector's own work plus a few microseconds per frame.
        for frame in video.iter_frames(width, height, format="bgr24"):
            timecode = FrameTimecode(count, fps)
            hits = detector.process_frame(timecode, frame)
            if hits:
                cuts.extend(_frame_num(t) for t in hits)
            count += 1
        if count == 0:
            raise VideoError(f"{video.path}: no frame decodes")
        cuts.extend(_frame_num(t) for t in detector.post_process(timecode))
        starts = [0] + sorted({c for c in cuts if 0 < c < count})
        shots = [[s, e - 1] for s, e in zip(starts, starts[1:] + [count])]
        return ShotDetection(shots=shots, fps=video.fps, num_frames=count)


@hookimpl
def register_shot_detectors(register):
    register("pyscenedetect", PySceneDetectDetector)
