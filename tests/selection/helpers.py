"""Shared helpers for the selection tests: a plugin manager with the selection plugins."""

from __future__ import annotations

import importlib

from temple_core.plugins import PluginManager

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
