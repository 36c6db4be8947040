"""Family-independent helpers the backends share (public: third-party backends use them too):
frames from a video content item (at a rate, or a fixed count), resizing
that matches the transformers processors without torchvision, Qwen-style patch flattening,
a tiny tokenizer for the ``tiny-random`` presets, and padding.

Resizing equivalence: the transformers video processors resize ``uint8`` frames with
torchvision ``resize(..., BICUBIC, antialias=True)``. On the CPU (where processors run
unless given a ``device``) torchvision hands the ``uint8`` tensor straight to torch's own
``interpolate(mode="bicubic", antialias=True, align_corners=False)``, whose native ``uint8``
kernel rounds and clamps after each separable pass. We call that same torch kernel, so the
frames are bit-identical (checked against the processor where torchvision is installed).
(On a GPU torchvision instead interpolates in float and rounds once at the end, which can
differ by a few levels where bicubic overshoots: high-contrast edges.)
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from temple_core.errors import VideoError

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def cache_dir() -> Path:
    """Where built presets live: ``$TEMPLE_CACHE`` or ``~/.cache/temple``."""
    return Path(os.environ.get("TEMPLE_CACHE") or Path.home() / ".cache" / "temple")


class SampledVideo(NamedTuple):
    """The frames of a video content item and when they were taken."""

    #: ``(T, H, W, 3) uint8`` RGB.
    frames: np.ndarray
    #: The rate they were sampled at (frames/s): below the asked fps when ``max_frames`` capped them.
    fps: float
    #: Seconds of each frame in its source video (a clip's start included); for given
    #: ``frames``, ``i / fps``.
    timestamps: list[float]


def sample_video(item: dict[str, Any] | str, fps: float, max_frames: int) -> SampledVideo:
    """Frames of a video content item (``path`` + optional ``start``/``end`` seconds, or
    ``frames``), sampled at ``fps`` with at most ``max_frames`` spread over the range, with
    their rate and timestamps (for families whose prompt states frame times, e.g. Qwen3-VL)."""
    from temple_core.video.source import VideoSource, sample_indices

    if isinstance(item, (str, Path)):
        item = {"type": "video", "path": str(item)}
    if item.get("frames") is not None:
        frames = [np.asarray(f) for f in item["frames"]]
        if not frames:
            raise VideoError("a video item with an empty frame list")
        # Given frames: sampled by the caller, at ``fps`` unless the item says otherwise.
        rate = float(item.get("fps") or fps)
        return SampledVideo(np.stack(frames), rate, [i / rate for i in range(len(frames))])
    source = VideoSource(item["path"])
    indices = sample_indices(source.num_frames, source.fps, fps, item.get("start"), item.get("end"), max_frames)
    frames = np.stack(source.read_frames(indices))
    # The effective rate: fewer frames than asked when max_frames capped them.
    span = (indices[-1] - indices[0] + 1) / source.fps
    rate = len(indices) / span if len(indices) > 1 else fps
    return SampledVideo(frames, rate, [i / source.fps for i in indices])


def item_frames(item: dict[str, Any] | str, fps: float, max_frames: int) -> tuple[np.ndarray, float]:
    """Frames ``(T, H, W, 3) uint8`` of a video content item and the rate they were sampled
    at (frames/s): :func:`sample_video` without the timestamps."""
    video = sample_video(item, fps, max_frames)
    return video.frames, video.fps


def uniform_indices(first: int, stop: int, count: int) -> list[int]:
    """``count`` indices spread uniformly over ``[first, stop)``, both ends included and
    truncated, as lmms-eval's and LLaVA's video loaders pick frames
    (``np.linspace(first, stop - 1, count, dtype=int)``): a range shorter than ``count``
    repeats frames, so every video gets exactly ``count``."""
    if stop <= first or count < 1:
        raise VideoError(f"no frames to pick: [{first}, {stop}), count {count}")
    return [int(i) for i in np.linspace(first, stop - 1, count, dtype=int)]


def read_video_frames(path: str | Path, count: int, start: float | None = None, end: float | None = None) -> np.ndarray:
    """Exactly ``count`` frames ``(count, H, W, 3) uint8`` of ``[start, end)`` seconds of a video
    file (all of it when both are None), at :func:`uniform_indices` of its native frames -- for
    families that take a fixed number of frames per video rather than a rate."""
    from temple_core.video.source import VideoSource, frame_range

    source = VideoSource(path)
    first, stop = frame_range(source.num_frames, source.fps, start, end)
    return np.stack(source.read_frames(uniform_indices(first, stop, count)))


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's ``smart_resize`` (transformers' own function, imported: it needs no torchvision)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf_smart_resize

    return hf_smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)


#: qwen-vl-utils' image limits (0.0.8-0.0.11, the releases of the TEMPLE release's time): factor
#: 28, at least 4 x 28 x 28 and at most 16,384 x 28 x 28 pixels.
QWEN_VL_UTILS_IMAGE = {"factor": 28, "min_pixels": 4 * 28 * 28, "max_pixels": 16384 * 28 * 28}


def qwen_vl_utils_frame(frame: np.ndarray) -> np.ndarray:
    """One frame ``(H, W, 3) uint8`` as qwen-vl-utils' ``fetch_image`` (0.0.8-0.0.11) hands it
    on when a video is given as a list of frames: resized with PIL's default filter for RGB
    (bicubic) to its ``smart_resize`` within :data:`QWEN_VL_UTILS_IMAGE`. The processor resizes
    the result again to its own bounds. The size rule is qwen-vl-utils' own (sides at least one
    factor, which transformers' copy does not ensure); PIL does the resampling."""
    from PIL import Image

    height, width = frame.shape[:2]
    factor, low, high = QWEN_VL_UTILS_IMAGE["factor"], QWEN_VL_UTILS_IMAGE["min_pixels"], QWEN_VL_UTILS_IMAGE["max_pixels"]
    if max(height, width) / min(height, width) > 200:
        raise VideoError(f"a frame of {width}x{height}: aspect ratio over 200 (qwen-vl-utils refuses it)")
    h_bar, w_bar = max(factor, round(height / factor) * factor), max(factor, round(width / factor) * factor)
    if h_bar * w_bar > high:
        beta = math.sqrt(height * width / high)
        h_bar, w_bar = max(factor, math.floor(height / beta / factor) * factor), max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < low:
        beta = math.sqrt(low / (height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    if (h_bar, w_bar) == (height, width):
        return frame  # PIL's resize to the same size is a copy
    return np.asarray(Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8)).resize((w_bar, h_bar), Image.Resampling.BICUBIC))


def frame_pixel_cap(max_pixels: float, min_pixels: int, total_pixels: int | None, frames: int, temporal_factor: int = 2) -> float:
    """The per-frame pixel cap of a video that has a total pixel budget.

    qwen-vl-utils' rule (``fetch_video``; ms-swift's ``VIDEO_TOTAL_PIXELS``, which the release's
    launchers set): ``max(min(max_pixels, total_pixels / frames * temporal_factor),
    int(min_pixels * 1.05))`` -- a frame's share of the budget, counting the ``temporal_factor``
    frames of a temporal patch as one, never below 1.05x the minimum. transformers'
    ``Qwen2VLVideoProcessor`` (``cap_pixels_per_frame``) has the same rule with an integer
    division and a budget of its own (90% of ``max_video_tokens``); we follow qwen-vl-utils.
    ``frames`` is the number of sampled frames (before padding to the temporal patch).
    Without a budget the cap is ``max_pixels``."""
    if total_pixels is None:
        return max_pixels
    return max(min(max_pixels, total_pixels / max(1, frames) * temporal_factor), int(min_pixels * 1.05))


def resize_uint8(frames: np.ndarray, height: int, width: int) -> torch.Tensor:
    """``(T, H, W, 3) uint8`` -> ``(T, 3, height, width)`` float in 0..255, resized exactly
    as torchvision's ``uint8`` bicubic antialiased resize on the CPU (torch's native kernel)."""
    video = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.uint8)).permute(0, 3, 1, 2)
    if video.shape[-2:] != (height, width):
        video = torch.nn.functional.interpolate(video, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return video.float()


def qwen_patchify(
    frames: np.ndarray, *, patch_size: int, merge_size: int, temporal_patch_size: int,
    min_pixels: int = 0, max_pixels: int = 0, mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD,
    size: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, list[int]]:
    """Qwen-VL visual input: ``(T, H, W, 3) uint8`` frames -> flattened patches
    ``(grid_t*grid_h*grid_w, 3*tps*p*p)`` and ``[grid_t, grid_h, grid_w]``.

    Same steps as ``Qwen2VLVideoProcessor`` (and ``Qwen3VLVideoProcessor``, same layout):
    resize -- to ``size`` (height, width) when given, a multiple of patch*merge, else to
    Qwen2-VL's per-frame ``smart_resize`` within ``[min_pixels, max_pixels]`` --, rescale +
    normalise, pad the frame count to a multiple of the temporal patch by repeating the last
    frame, then the patch layout (merge windows contiguous)."""
    t, h, w = frames.shape[0], frames.shape[1], frames.shape[2]
    if size is not None:
        rh, rw = size
        if rh % (patch_size * merge_size) or rw % (patch_size * merge_size):
            raise ValueError(f"qwen_patchify: size {size} is not a multiple of patch x merge ({patch_size * merge_size})")
    else:
        rh, rw = smart_resize(h, w, patch_size * merge_size, min_pixels, max_pixels)
    video = resize_uint8(frames, rh, rw) / 255.0
    video = (video - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    if pad := -t % temporal_patch_size:
        video = torch.cat([video, video[-1:].expand(pad, -1, -1, -1)])
        t += pad
    gt, gh, gw = t // temporal_patch_size, rh // patch_size, rw // patch_size
    patches = video.reshape(gt, temporal_patch_size, 3, gh // merge_size, merge_size, patch_size, gw // merge_size, merge_size, patch_size)
    patches = patches.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return patches.reshape(gt * gh * gw, 3 * temporal_patch_size * patch_size * patch_size), [gt, gh, gw]


def image_uint8(image, family: str = "backend") -> np.ndarray:
    """An image content item's ``image`` (PIL image, any mode, or ``(H, W[, C])`` array) ->
    ``(H, W, 3) uint8`` RGB, as the processors' ``do_convert_rgb``; anything else is a
    :class:`ModelError` naming ``family``."""
    from temple_core.errors import ModelError

    if hasattr(image, "convert"):  # PIL: palette, grey, RGBA ... -> RGB
        image = image.convert("RGB")
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, -1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4) or array.dtype != np.uint8:
        raise ModelError(f"{family}: an image must be a PIL image or an (H, W, 3) uint8 array, got {array.dtype} {array.shape}")
    return np.array(array[..., :3])  # a writable copy (torch warns on read-only arrays)


def pad_rows(rows: list[list[int]], value: int, side: str = "right") -> torch.Tensor:
    """Lists of ints -> ``(len(rows), longest)`` long tensor padded with ``value``."""
    length = max(len(r) for r in rows)
    out = torch.full((len(rows), length), value, dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            if side == "right":
                out[i, : len(r)] = torch.tensor(r)
            else:
                out[i, length - len(r):] = torch.tensor(r)
    return out


_TINY_TEXT = """
The video shows a red scene, then a green scene, then a blue scene. A white bar moves from left to right.
Describe the video in detail. What happens first, and what happens next? The camera pans across a room.
A person walks into the kitchen, opens the door, and picks up a cup. Then the scene changes to a street
at night with cars and lights. The order of events matters: first, second, third, finally, before, after.
Summarise the clips in time order. The answer is yes or no. One two three four five six seven eight nine ten.
"""


def build_tiny_tokenizer(special_tokens: list[str], chat_template: str, eos: str, pad: str, vocab_size: int = 600,
                         named_tokens: dict[str, str] | None = None, text: str | None = None):
    """A small byte-level BPE tokenizer trained on a fixed text (deterministic), with the
    family's special tokens, wrapped as a transformers fast tokenizer. ``named_tokens``
    (e.g. ``{"video_token": "<video>"}``) become attributes of the tokenizer, as a family's
    processor expects (``extra_special_tokens`` in its config). ``text``: the training text
    (default: a fixed paragraph; the micro preset gives its world's words and prompts)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special_tokens, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator([_TINY_TEXT if text is None else text] * 4, trainer=trainer)
    extra = {"extra_special_tokens": dict(named_tokens)} if named_tokens else {}
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=pad, **extra)
    fast.add_special_tokens({"additional_special_tokens": [t for t in special_tokens if t not in (eos, pad)]})
    fast.chat_template = chat_template
    return fast


def check_model_dir(path: str, family: str, model_types: tuple[str, ...], trust_remote_code: bool, remote_types: tuple[str, ...] = ()) -> dict:
    """Validate a model directory before loading: it exists, has a config and weights, and
    its ``model_type`` is one of ``model_types`` (or a remote-code type allowed only with
    ``trust_remote_code``). Returns the config dict. Errors are :class:`ModelError`."""
    import json

    from temple_core.errors import ModelError

    folder = Path(path)
    if not folder.is_dir():
        raise ModelError(f"{family}: model directory {folder} does not exist")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ModelError(f"{family}: {folder} has no config.json (not a model directory, or incomplete)")
    weights = list(folder.glob("*.safetensors")) + list(folder.glob("*.bin"))
    if not weights:
        raise ModelError(f"{family}: {folder} has no weights (*.safetensors / *.bin): incomplete download or save?")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        missing = sorted({f for f in json.loads(index.read_text())["weight_map"].values() if not (folder / f).is_file()})
        if missing:
            raise ModelError(f"{family}: {folder} is incomplete: missing weight shards {', '.join(missing)}")
    config = json.loads(config_file.read_text())
    model_type = config.get("model_type")
    if model_type in remote_types:
        if not trust_remote_code:
            raise ModelError(
                f"{family}: {folder} is a remote-code checkpoint ({model_type}); set trust_remote_code: true "
                "to run its own code, or use the HF-format checkpoint"
            )
    elif model_type not in model_types:
        raise ModelError(f"{family}: {folder} holds a '{model_type}' model, not {' / '.join(model_types)}: wrong backend for this checkpoint?")
    return config
