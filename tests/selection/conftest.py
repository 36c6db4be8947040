"""Synthetic videos with known cuts, generated once per test session (PyAV, 96x64, 10 fps)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # helpers.py

from temple_core.synthetic import Shot, interview, write_audio_only, write_video  # noqa: E402

FPS = 10

# name -> shots. Scene ids: same id = same look (so same similarity group).
VIDEOS = {
    # Five distinct moving scenes, hard cuts: kept, five segments.
    "cuts": [Shot(0, 20), Shot(1, 22), Shot(2, 18), Shot(3, 25), Shot(4, 20)],
    # A 10-frame fade from scene 0 to scene 1, then hard cuts.
    "fade": [Shot(0, 25), Shot(0, 10, "fade", to=1), Shot(1, 25), Shot(2, 25), Shot(3, 25)],
    # A 3-frame black flash inside scene 0 (0.3 s but < 8 frames) and a 12-frame black shot
    # (monochrome); scene 0 continues after the flash (same group -> one segment).
    "flash": [Shot(0, 25), Shot(9, 3, "black"), Shot(0, 25), Shot(1, 25), Shot(5, 12, "black"), Shot(2, 25), Shot(3, 25)],
    # A static shot of 17 s: the video is rejected for a long scene.
    "long": [Shot(0, 20), Shot(1, 170, "static"), Shot(2, 20), Shot(3, 20)],
    # A B A B A B: one group as 3 of 6 segments (> 6 // 3) -> rejected.
    "interview": interview(3, 20),
    # Only three shots -> rejected for too few shots.
    "three": [Shot(6, 20), Shot(7, 20), Shot(8, 20)],
}


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
    from helpers import selection_plugins

    return selection_plugins()
