"""Videos: opening and streaming them (:mod:`.source`), PyAV decoding and frame conversion
(:mod:`.decoding`), and the decode worker process that overlaps decoding with detection
(:mod:`.worker`). ``source`` uses ``decoding`` and ``worker``; ``worker`` uses ``decoding``;
``decoding`` uses neither (no import cycle)."""

from temple_core.video.source import VideoSource, sample_indices

__all__ = ["VideoSource", "sample_indices"]
