"""exclusion_reason agrees with eligible() and says which rule excluded a node."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tooti.routing import Candidate, Preferences, eligible
from tooti.routing.explain import exclusion_reason, explain_exclusions


def cand(**kw):
    return Candidate(**{"peer_id": "p", "models": frozenset({"m"}), **kw})


@pytest.mark.parametrize(
    ("candidate", "prefs", "reason"),
    [
        (cand(models=frozenset({"x"})), Preferences(model="m"), "does not serve 'm'"),
        (cand(reputation=0.0), Preferences(model="m"), "quarantined (reputation 0)"),
        (cand(cooling=True, recent_failures=3), Preferences(model="m"), None),  # cooling ranks last, still eligible
        (cand(), Preferences(model="m", ignore=frozenset({"p"})), "in the request's ignore list"),
        (cand(), Preferences(model="m", only=frozenset({"q"})), "not in the request's only list"),
        (
            cand(price_in_per_1k=0.002, price_out_per_1k=0.001),
            Preferences(model="m", max_price=0.002),
            "price 0.003/1K above max_price 0.002",
        ),
        (cand(), Preferences(model="m", region="eu"), "region unset is not eu"),
        (cand(region="us"), Preferences(model="m", region="eu"), "region us is not eu"),
        (cand(), Preferences(model="m"), None),
    ],
)
def test_each_rule_has_a_reason(candidate, prefs, reason):
    assert exclusion_reason(candidate, prefs) == reason


def test_explain_exclusions_lists_only_the_excluded():
    cands = [cand(peer_id="ok"), cand(peer_id="bad", reputation=0.0)]
    assert explain_exclusions(cands, Preferences(model="m")) == ("bad: excluded, quarantined (reputation 0)",)


@settings(max_examples=200, deadline=None)
@given(
    c=st.builds(
        Candidate,
        peer_id=st.sampled_from(["a", "b"]),
        models=st.frozensets(st.sampled_from(["m", "x"])),
        price_in_per_1k=st.none() | st.floats(0, 1),
        price_out_per_1k=st.none() | st.floats(0, 1),
        region=st.none() | st.sampled_from(["eu", "us"]),
        reputation=st.sampled_from([0.0, 0.5, 1.0]),
        cooling=st.booleans(),
    ),
    prefs=st.builds(
        Preferences,
        model=st.just("m"),
        max_price=st.none() | st.floats(0, 2),
        only=st.none() | st.frozensets(st.sampled_from(["a", "b"]), min_size=1),
        ignore=st.frozensets(st.sampled_from(["a", "b"])),
        region=st.none() | st.sampled_from(["eu", "us"]),
    ),
)
def test_reason_is_none_exactly_when_eligible(c, prefs):
    assert (exclusion_reason(c, prefs) is None) == bool(eligible([c], prefs))
