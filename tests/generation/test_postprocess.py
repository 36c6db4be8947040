"""Caption post-processing (SPEC §2.1), prompts, and recipe checks of the generate section."""

from __future__ import annotations

import pytest

from temple_core.errors import RecipeError
from temple_core.generation.captions import extract_caption
from temple_core.plugins import get_plugin_manager
from temple_core.generation.prompts import numbered_captions, summary_prompt
from temple_core.recipe import recipe_from_data


@pytest.mark.parametrize(
    "answer, caption",
    [
        ("Clip 2 shows a kitchen.\nIt follows clip 1.\n\nCaption: A woman chops onions.", "A woman chops onions."),
        ('Reasoning...\n**Caption:** "In clip 2, the man from clip 1 opens a door."', "In this clip, the man from the previous clip opens a door."),
        ("- Final caption: the second clip shows rain over the first clip's street.", "This clip shows rain over the previous clip's street."),
        ("Detailed caption of clip 2: “A red car drives away.”", "A red car drives away."),
        ("A cat sleeps on a sofa.", "A cat sleeps on a sofa."),
        ("## Description - *A boat* at sea", "A boat at sea"),
        ("", ""),
        ("\n  \n", ""),
        # Only a pair of quotes around the whole caption goes; quotes of the caption stay.
        ('Caption: "A man shouts \'hi\'"', "A man shouts 'hi'"),
        ("Caption: 'Stop' is painted on the road.", "'Stop' is painted on the road."),
        ('Caption: A sign reading "OPEN"', 'A sign reading "OPEN"'),
        ("Caption: A view of the players'", "A view of the players'"),
        ('Caption: "OPEN" and "CLOSED" signs hang side by side', '"OPEN" and "CLOSED" signs hang side by side'),
        ('Caption: "A dog runs".', "A dog runs."),
        ("Caption: 'The dog's ball rolls.'", "The dog's ball rolls."),
        ("Caption: 'Stop' means 'halt'", "'Stop' means 'halt'"),
        ("'Stop' is painted on the 'road'.", "'Stop' is painted on the 'road'."),
        ("‘Stop’ is painted on the ‘road’", "‘Stop’ is painted on the ‘road’"),
        ("‘The dog’s ball rolls.’", "The dog’s ball rolls."),
        ("Caption 2-year-old child plays.", "Caption 2-year-old child plays."),  # a hyphen, not a separator
        ("Caption - A dog runs.", "A dog runs."),
        # Numbered and other prefix forms a model writes after the summary's "Caption 1: ..." list.
        ("Caption 2: A dog runs.", "A dog runs."),
        ("Caption for this clip: A dog runs.", "A dog runs."),
        ("Caption (clip 2): A dog runs.", "A dog runs."),
    ],
)
def test_extract_caption(answer, caption):
    assert extract_caption(answer) == caption


def test_summary_prompt_lists_captions_in_the_given_order():
    text = summary_prompt(["b happens", "a happens"])
    assert "Caption 1: b happens\nCaption 2: a happens" in text
    assert numbered_captions([]) == ""
    with pytest.raises(ValueError, match="captions"):
        summary_prompt(["x"], "no placeholder")


def _recipe(generate):
    # Options only: no run directory to check the selection's outputs in.
    return recipe_from_data({"run_dir": "/tmp/unused", "generate": generate}, plugins=get_plugin_manager(), check_files=False)


def test_contextual_without_backend_is_a_recipe_error():
    with pytest.raises(RecipeError, match="generate.backend"):
        _recipe({"captioner": {"name": "contextual"}})


def test_bad_captioner_options_name_the_recipe_path():
    with pytest.raises(RecipeError, match="generate.captioner"):
        _recipe({"captioner": {"name": "contextual", "level": "pixels"}, "backend": None})
    with pytest.raises(RecipeError, match="generate.captioner"):
        _recipe({"captioner": {"name": "heuristic", "colour": "red"}})


def test_heuristic_needs_no_backend():
    recipe = _recipe({"captioner": {"name": "heuristic"}})
    assert recipe.generate.backend is None
