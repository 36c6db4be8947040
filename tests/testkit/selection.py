"""Helpers for the selection tests: the selection plugins alone, and synthetic videos with known cuts."""

from __future__ import annotations

import importlib

from temple_core.plugins import PluginManager
from temple_core.samples.synthetic import Shot, interview

MODULES = [
    "temple_plugins.shot_detectors.transnetv2",
    "temple_plugins.shot_detectors.pyscenedetect",
    "temple_plugins.similarity_encoders.colorhist",
    "temple_plugins.similarity_encoders.siglip",
    "temple_plugins.similarity_encoders.openclip",
]


def selection_plugins() -> PluginManager:
    """Only the selection plugins, registered exactly as the registry would load them."""
    pm = PluginManager(load=False)
    for name in MODULES:
        pm.add_module(importlib.import_module(name), "builtin")
    return pm


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
