"""Synthetic videos with known cuts, generated once per test session (PyAV, 96x64, 10 fps)."""

from __future__ import annotations

from pathlib import Path

import pytest

from temple_core.samples.synthetic import write_audio_only, write_video
from testkit.selection import FPS, VIDEOS, selection_plugins


@pytest.fixture(scope="session")
def videos_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    for name, shots in VIDEOS.items():
        write_video(root / f"{name}.mp4", shots, fps=FPS, gop=10)
    return root


@pytest.fixture(scope="session")
def bad_files(tmp_path_factory, videos_dir) -> dict[str, Path]:
    """Files that are not (readable) videos, each with a word its error must contain."""
    root = tmp_path_factory.mktemp("bad")
    empty = root / "empty.mp4"
    empty.write_bytes(b"")
    text = root / "notes.mp4"
    text.write_text("this is not a video\n")
    audio = write_audio_only(root / "audio.m4a")
    truncated = root / "truncated.mp4"
    data = (videos_dir / "cuts.mp4").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: cut off
    # Index at the start (faststart) but the data cut short: opens, then decodes too few frames.
    faststart = root / "faststart.mp4"
    write_video(faststart, VIDEOS["cuts"], fps=FPS, faststart=True)
    cut = root / "cut_short.mp4"
    data = faststart.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    faststart.unlink()
    return {"empty": empty, "notes": text, "audio": audio, "truncated": truncated, "cut_short": cut}


@pytest.fixture(scope="session")
def plugins():
    return selection_plugins()
