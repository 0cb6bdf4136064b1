"""parse_preferences: body object and x-tooti-* headers, merge rule, and errors naming the field."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tooti.routing.preferences import MAX_PEERS, PreferenceError, parse_preferences, pop_preferences
from tooti.routing.protocol import Preferences

PEER_A = "12D3KooWA"
PEER_B = "12D3KooWB"


def test_nothing_given_is_just_the_model():
    assert parse_preferences("m", None, {}) == Preferences(model="m")


def test_body_fields():
    body = {
        "strategy": "latency",
        "max_price": 0.002,
        "only": [PEER_A, PEER_B],
        "ignore": [PEER_B],
        "region": "eu-west",
    }
    assert parse_preferences("m", body, {}) == Preferences(
        model="m",
        strategy="latency",
        max_price=0.002,
        only=frozenset({PEER_A, PEER_B}),
        ignore=frozenset({PEER_B}),
        region="eu-west",
    )


def test_headers_are_case_insensitive_and_comma_lists_are_trimmed():
    headers = {
        "X-Tooti-Strategy": " cost ",
        "x-tooti-max-price": "0.5",
        "X-TOOTI-ONLY": f"{PEER_A}, {PEER_B},",
        "x-tooti-ignore": PEER_B,
        "x-tooti-region": "us",
        "x-other": "ignored",
    }
    assert parse_preferences("m", None, headers) == Preferences(
        model="m",
        strategy="cost",
        max_price=0.5,
        only=frozenset({PEER_A, PEER_B}),
        ignore=frozenset({PEER_B}),
        region="us",
    )


def test_body_wins_per_field_over_headers():
    headers = {"x-tooti-strategy": "cost", "x-tooti-region": "us"}
    prefs = parse_preferences("m", {"strategy": "latency"}, headers)
    assert (prefs.strategy, prefs.region) == ("latency", "us")


def test_null_body_fields_count_as_absent():
    prefs = parse_preferences("m", {"strategy": None, "max_price": None}, {"x-tooti-strategy": "cost"})
    assert (prefs.strategy, prefs.max_price) == ("cost", None)


def test_integer_price_is_accepted():
    assert parse_preferences("m", {"max_price": 1}, {}).max_price == 1.0


@pytest.mark.parametrize(
    ("body", "headers", "field", "fragment"),
    [
        ([1], {}, "tooti", "expected an object"),
        ({"stratgy": "cost"}, {}, "tooti.stratgy", "unknown field"),
        ({"strategy": ""}, {}, "tooti.strategy", "expected a name"),
        ({"strategy": 3}, {}, "tooti.strategy", "expected a name"),
        ({"strategy": "a b"}, {}, "tooti.strategy", "expected a name"),
        ({"strategy": "x" * 65}, {}, "tooti.strategy", "expected a name"),
        ({"max_price": -1}, {}, "tooti.max_price", "finite number >= 0"),
        ({"max_price": True}, {}, "tooti.max_price", "finite number >= 0"),
        ({"max_price": "cheap"}, {}, "tooti.max_price", "expected a number"),
        ({"max_price": float("inf")}, {}, "tooti.max_price", "finite number >= 0"),
        ({"only": []}, {}, "tooti.only", "non-empty list"),
        ({"only": PEER_A + ",,"}, {}, None, None),
        ({"ignore": [PEER_A, 7]}, {}, "tooti.ignore", "7 is not a peer id"),
        ({"ignore": ["../etc"]}, {}, "tooti.ignore", "is not a peer id"),
        ({"only": [f"P{i}" for i in range(MAX_PEERS + 1)]}, {}, "tooti.only", f"at most {MAX_PEERS}"),
        ({"region": {"eu": 1}}, {}, "tooti.region", "expected a name"),
        (None, {"x-tooti-max-price": "nan"}, "x-tooti-max-price", "finite number >= 0"),
        (None, {"x-tooti-max-price": "abc"}, "x-tooti-max-price", "expected a number"),
        (None, {"x-tooti-only": " , "}, "x-tooti-only", "non-empty list"),
        (None, {"x-tooti-strategy": "la\ttency"}, "x-tooti-strategy", "expected a name"),
        (None, {"x-tooti-region": "é"}, "x-tooti-region", "expected a name"),
    ],
)
def test_bad_values_name_the_field(body, headers, field, fragment):
    if field is None:
        parse_preferences("m", body, headers)  # accepted: trailing commas are ignored
        return
    with pytest.raises(PreferenceError) as info:
        parse_preferences("m", body, headers)
    assert info.value.field == field
    assert str(info.value).startswith(f"invalid routing preference {field}: ")
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_rejected_values_are_shortened_in_messages():
    with pytest.raises(PreferenceError) as info:
        parse_preferences("m", {"strategy": "y" * 500}, {})
    assert len(str(info.value)) < 200


def test_pop_removes_the_key_before_forwarding():
    body = {"model": "m", "messages": [], "tooti": {"strategy": "cost"}}
    prefs = pop_preferences("m", body, {})
    assert prefs.strategy == "cost"
    assert body == {"model": "m", "messages": []}


@settings(max_examples=200, deadline=None)
@given(
    body=st.none()
    | st.dictionaries(
        st.sampled_from(["strategy", "max_price", "only", "ignore", "region", "other"]),
        st.none() | st.text(max_size=10) | st.floats() | st.integers() | st.lists(st.text(max_size=5), max_size=3),
        max_size=4,
    ),
    headers=st.dictionaries(
        st.sampled_from(["x-tooti-strategy", "X-Tooti-Max-Price", "x-tooti-only", "x-tooti-ignore", "x-tooti-region"]),
        st.text(max_size=12),
        max_size=3,
    ),
)
def test_any_input_gives_preferences_or_a_preference_error(body, headers):
    try:
        prefs = parse_preferences("m", body, headers)
    except PreferenceError as exc:
        field = exc.field
    else:
        field = None
        assert prefs.model == "m"
        assert prefs.max_price is None or prefs.max_price >= 0
        assert prefs.only is None or prefs.only
    assert field is None or field.startswith(("tooti", "x-tooti-"))
