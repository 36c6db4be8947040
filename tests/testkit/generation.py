"""Synthetic selected videos for the generation tests: solid-colour scenes with known looks.

Each scene is a flat colour, optionally with a white square that moves between frames, so
the heuristic captioner's colour / brightness / motion words are known in advance. The
VideoRecords are built by hand (one clip per scene, one segment per clip, keyframes at 1/3
and 2/3), so these tests do not depend on the selection stage's decisions.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from temple_core.records import VideoRecord

W, H, FPS = 96, 64, 25

# (RGB, square size in pixels (0 = none), square speed in pixels per frame, square RGB)
SCENES = {
    "red_still": ((230, 20, 20), 0, 0, None),
    "dark_blue": ((10, 10, 70), 0, 0, None),
    "green_busy": ((20, 200, 40), 40, 3, (255, 255, 255)),
    "yellow_some": ((230, 210, 20), 20, 2, (0, 0, 0)),
    "magenta_still": ((220, 30, 200), 0, 0, None),
    "cyan_busy": ((20, 200, 210), 40, 3, (255, 255, 255)),
}


def scene_frame(name: str, t: int) -> np.ndarray:
    colour, size, speed, square = SCENES[name]
    frame = np.empty((H, W, 3), np.uint8)
    frame[:] = colour
    if size:
        x = (t * speed) % (W - size)
        y = (H - size) // 2
        frame[y : y + size, x : x + size] = square
    return frame


def write_scenes(path: Path, scenes: list[str], frames_per_scene: int = 25) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"crf": "10", "bf": "0", "preset": "veryfast"}
        for name in scenes:
            for t in range(frames_per_scene):
                for packet in stream.encode(av.VideoFrame.from_ndarray(scene_frame(name, t), format="rgb24")):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def selected_record(video_id: str, path: Path, scenes: list[str], frames_per_scene: int = 25) -> VideoRecord:
    """A ``kept`` VideoRecord: one clip, one segment per scene, keyframes at 1/3 and 2/3."""
    clips = [[i * frames_per_scene, (i + 1) * frames_per_scene - 1] for i in range(len(scenes))]
    keyframes = [[a + frames_per_scene // 3, a + 2 * frames_per_scene // 3] for a, _ in clips]
    n = len(scenes) * frames_per_scene
    return VideoRecord(
        video_id=video_id, path=str(path), status="kept", fps=float(FPS), num_frames=n, duration=n / FPS,
        shots=clips, clips=clips, groups=[[i] for i in range(len(scenes))],
        segments=[[i] for i in range(len(scenes))], keyframes=keyframes,
    )


def write_selection(run_dir: Path, records: list[VideoRecord], extra: list[dict] | None = None) -> Path:
    """``<run_dir>/select/videos.jsonl`` as the select stage would leave it."""
    from temple_core.store import write_jsonl_atomic

    path = Path(run_dir) / "select" / "videos.jsonl"
    write_jsonl_atomic(path, [r.to_dict() for r in records] + list(extra or []))
    return path


def selected_run(tmp: Path, videos: dict[str, list[str]]) -> tuple[Path, list[VideoRecord]]:
    """A run directory whose selection kept ``videos`` (id -> scene names) and rejected one more."""
    run_dir = tmp / "run"
    records = [selected_record(vid, write_scenes(tmp / "videos" / f"{vid}.mp4", s), s) for vid, s in videos.items()]
    rejected = {"video_id": "too_short", "path": str(tmp / "videos" / "none.mp4"), "status": "rejected", "reason": "3 shots"}
    write_selection(run_dir, records, [rejected])
    return run_dir, records
