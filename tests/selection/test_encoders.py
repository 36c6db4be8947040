"""Similarity encoders: unit-norm embeddings; same scene similar, different scenes not."""

import importlib.util

import numpy as np
import pytest

from temple_core.config import structure
from temple_core.errors import ModelError, RecipeError, TempleError
from temple_core.video.source import VideoSource
from temple_plugins.similarity_encoders.colorhist import ColorHistEncoder
from temple_plugins.similarity_encoders.siglip import SiglipEncoder


@pytest.fixture(scope="module")
def interview_frames(videos_dir):
    # interview: A B A B A B, 20 frames each -> middles of shots 0, 1, 2 (scenes A, B, A).
    return VideoSource(videos_dir / "interview.mp4").read_frames([10, 30, 50])


def test_colorhist_groups_same_scene(interview_frames):
    e = ColorHistEncoder().encode(interview_frames)
    assert e.dtype == np.float32 and e.shape == (3, 12 * 4 * 4)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-5)
    s = e @ e.T
    assert s[0, 2] > 0.8 > s[0, 1]


def test_siglip_tiny_random_embeddings(interview_frames):
    enc = SiglipEncoder(SiglipEncoder.Options(preset="tiny-random"))
    e = enc.encode(interview_frames)
    assert e.dtype == np.float32 and e.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-5)
    # Seeded: a second instance gives the same embeddings; the global RNG is left alone.
    import torch

    before = torch.get_rng_state()
    again = SiglipEncoder(SiglipEncoder.Options(preset="tiny-random")).encode(interview_frames)
    np.testing.assert_allclose(e, again, rtol=1e-5)
    assert torch.equal(before, torch.get_rng_state())
    assert enc.encode([]).shape == (0, 32)


def test_siglip_loads_a_saved_checkpoint(tmp_path, interview_frames):
    from transformers import SiglipVisionConfig, SiglipVisionModel

    from temple_plugins.similarity_encoders.siglip import TINY

    SiglipVisionModel(SiglipVisionConfig(**TINY)).save_pretrained(tmp_path / "ckpt")
    e = SiglipEncoder(SiglipEncoder.Options(path=str(tmp_path / "ckpt"))).encode(interview_frames)
    assert e.shape == (3, 32)


def test_siglip_missing_directory_is_a_clear_error(tmp_path):
    enc = SiglipEncoder(SiglipEncoder.Options(path=str(tmp_path / "nope")))
    with pytest.raises(ModelError, match="checkpoint directory not found: .*nope"):
        enc.encode([])


def test_siglip_needs_path_or_preset(plugins):
    with pytest.raises(RecipeError, match="select.encoder: siglip: give exactly one of"):
        structure_select(plugins, {"encoder": {"name": "siglip"}})


def test_openclip_without_package_says_how_to_install():
    if importlib.util.find_spec("open_clip") is not None:
        pytest.skip("open_clip_torch is installed")
    from temple_plugins.similarity_encoders.openclip import OpenClipEncoder

    with pytest.raises(TempleError, match=r"pip install -e '\.\[openclip\]' in the checkout"):
        OpenClipEncoder()


def structure_select(plugins, data):
    from temple_core.stages.select import Config

    return structure(Config, data, "select", plugins=plugins)


def test_recipe_options_are_validated(plugins):
    config = structure_select(plugins, {"shot_detector": {"name": "transnetv2", "threshold": 0.3, "head": "single"}})
    assert config.shot_detector.options.threshold == 0.3 and config.group_threshold == 0.8
    assert config.encoder.name == "colorhist"
    with pytest.raises(RecipeError, match=r"select.shot_detector.threshold"):
        structure_select(plugins, {"shot_detector": {"name": "transnetv2", "threshold": 1.5}})
    with pytest.raises(RecipeError, match=r"select.shot_detector.head"):
        structure_select(plugins, {"shot_detector": {"name": "transnetv2", "head": "multi"}})
    with pytest.raises(RecipeError, match=r"select.shot_detector.detector"):
        structure_select(plugins, {"shot_detector": {"name": "pyscenedetect", "detector": "histogram"}})
    with pytest.raises(RecipeError, match=r"select.min_shots"):
        structure_select(plugins, {"min_shots": -1})
    with pytest.raises(RecipeError, match=r"larger than max_shots"):
        structure_select(plugins, {"min_shots": 40})


def test_siglip_from_a_full_siglip_checkpoint_matches_its_image_features(tmp_path, interview_frames):
    """A full SigLIP checkpoint (vision + text towers, as google/siglip-* ship) loads as the
    vision tower alone and gives SiglipModel.get_image_features, normalised."""
    import torch
    from transformers import SiglipConfig, SiglipModel

    from temple_plugins.similarity_encoders.siglip import TINY

    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=100)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        full = SiglipModel(SiglipConfig(vision_config=TINY, text_config=text)).eval()
    full.save_pretrained(tmp_path / "full")
    enc = SiglipEncoder(SiglipEncoder.Options(path=str(tmp_path / "full")))
    ours = enc.encode(interview_frames)
    with torch.no_grad():
        pixels = enc._processor(images=interview_frames, return_tensors="pt")["pixel_values"]
        ref = full.get_image_features(pixel_values=pixels)
    ref = getattr(ref, "pooler_output", ref)  # transformers 5 may return an output object
    np.testing.assert_allclose(ours, torch.nn.functional.normalize(ref, dim=-1).numpy(), atol=1e-5)
