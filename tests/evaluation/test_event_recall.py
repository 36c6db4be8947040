"""event_recall's text rule: which events a description names, and in which order.

Expected values are counted by hand from the texts below (not computed with the evaluator's code).
"""

from temple_plugins.evaluators.event_recall import description_scores

PHRASES = ["a red circle moves left", "a blue square moves up", "a green cross moves down"]


def test_recall_precision_and_pairwise_order_by_hand():
    text = "First, a blue square moves up. Then, a red circle moves left. Finally, a cyan triangle moves right."
    s = description_scores(text, PHRASES)
    # Named: red circle, blue square (2 of 3); sentences 3, naming an event 2;
    # the one mentioned pair (red circle, blue square) is told in the wrong order.
    assert (s["found"], s["events"], s["sentences"], s["named_sentences"]) == (2, 3, 3, 2)
    assert (s["pairs"], s["ordered_pairs"]) == (1, 0)
    assert s["missing"] == ["a green cross moves down"]


def test_whole_words_and_case():
    # "A RED CIRCLE MOVES LEFTWARD" is not the phrase (whole words); punctuation and case are ignored.
    s = description_scores("A RED CIRCLE MOVES LEFTWARD; a Blue Square moves up! A green cross moves down", PHRASES)
    assert (s["found"], s["pairs"], s["ordered_pairs"]) == (2, 1, 1)
    assert description_scores("", PHRASES)["found"] == 0
