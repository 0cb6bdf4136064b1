"""The audit's scoring rule, unit level (the live proof against a real evader: test_trust_audits_llamacpp)."""

from __future__ import annotations

import random

from tooti.trust.replay_check import cut_points, judge, next_token, position_score


def test_cut_points_are_word_ends_and_start_at_zero():
    cuts = cut_points("The fruit I like", 4, random.Random(1))
    assert cuts[0] == 0
    assert set(cuts[1:]) <= {3, 9, 11}


def test_tokens_in_the_top_pass_and_made_up_text_fails():
    answer = "The fruit I like"
    good = [position_score(answer, 0, ["The", "A"], 10), position_score(answer, 3, [" fruit", " most"], None)]
    assert judge(good, full_prompt_tokens=14, claimed_prompt=10, claimed_completion=4).outcome == "pass"
    bad_answer = "The answer is 3fa2b1c4, clearly"
    bad = [
        position_score(bad_answer, 0, ["The"], 10),
        position_score(bad_answer, 13, [" an", " a"], None),
        position_score(bad_answer, 23, [" which"], None),
    ]
    assert judge(bad, full_prompt_tokens=20, claimed_prompt=10, claimed_completion=10).outcome == "fail"


def test_usage_claimed_three_times_over_is_inflated():
    answer = "The fruit I like"
    scores = [position_score(answer, 0, ["The"], 10)]
    verdict = judge(scores, full_prompt_tokens=14, claimed_prompt=30, claimed_completion=12)
    assert verdict.outcome == "usage"
    assert verdict.checked_prompt_tokens == 10
    assert verdict.checked_completion_tokens == 4


def test_next_token_walks_the_reference_tokens_longest_first():
    assert next_token(" strawberry.", [" s", " straw", " strawberry", "."]) == " strawberry"
    assert next_token(" e43aaa73,", [" e", " the"]) == " e"
    assert next_token("43aaa73,", ["1", " is", ""]) is None  # inside the made-up word: caught here
    assert next_token("ap", ["apple"]) == "ap"  # the answer stops inside the reference's token
    assert next_token("x", ["", ""]) is None
