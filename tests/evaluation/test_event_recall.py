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


def test_a_phrase_inside_a_longer_one_and_a_repeated_event():
    # Events: "a dog runs", then "a dog runs away". Told both, in order: one ordered pair. Told
    # only the second: the shorter phrase is not found inside the longer one's words (it was:
    # both events found, at the same place).
    s = description_scores("A dog runs. Then a dog runs away.", ["a dog runs", "a dog runs away"])
    assert (s["found"], s["pairs"], s["ordered_pairs"]) == (2, 1, 1)
    s = description_scores("A dog runs away.", ["a dog runs", "a dog runs away"])
    assert (s["found"], s["pairs"], s["missing"]) == (1, 0, ["a dog runs"])
    # The same event twice, between two others: each telling is one event, in order.
    phrases = ["a cat sits", "a dog barks", "a cat sits"]
    s = description_scores("A cat sits, a dog barks, and a cat sits.", phrases)
    assert (s["found"], s["pairs"], s["ordered_pairs"]) == (3, 3, 3)
    s = description_scores("A dog barks and a cat sits.", phrases)
    # Found: the first "a cat sits" (the second has no telling left) and the bark: the pair
    # (cat 1, bark) is told bark first -- out of order.
    assert (s["found"], s["pairs"], s["ordered_pairs"]) == (2, 1, 0)
