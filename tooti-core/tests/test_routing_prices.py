"""One owner per announced name: routing's candidate and accounting's charge read the same model."""

from __future__ import annotations

from tooti.accounting.pricing import Prices
from tooti.gateway.candidates import candidate_for
from tooti.gateway.observations import Observations
from tooti.network import AdvertisedModel, NodeView
from tooti.routing.load import load_ratio, outstanding
from tooti.routing.prices import models_by_name, total_price
from tooti.routing.table import RouteTable

# A node announcing "m" twice: as the name of a cheap small-context model, then as an alias of an
# expensive large-context one. The first announcement owns the name, for routing and billing alike.
CHEAP = AdvertisedModel(name="m", context_length=2048, price_in_per_1k=1.0, price_out_per_1k=2.0)
DEAR = AdvertisedModel(name="m-large", aliases=("m",), context_length=32768, price_in_per_1k=5.0, price_out_per_1k=9.0)
TWICE = NodeView(peer_id="twice", models=(CHEAP, DEAR), in_flight=3, queued=1, capacity=8)


def test_the_first_model_announcing_a_name_owns_it():
    owners = models_by_name(TWICE)
    assert owners["m"] is CHEAP
    assert owners["m-large"] is DEAR


def test_the_charge_is_the_price_the_request_was_routed_under():
    table = RouteTable(15.0, clock=lambda: 0.0)
    table.put(TWICE)
    obs = Observations(cooldown_sec=1)
    (entry,) = table.select("m", 0.0)
    candidate = candidate_for(entry, "m", obs, obs.now())
    prices = Prices()
    prices.refresh(lambda: [TWICE], force=True)

    assert (candidate.price_in_per_1k, candidate.price_out_per_1k) == (1.0, 2.0)
    assert candidate.context_length == 2048
    assert prices.of("twice", "m") == (1.0, 2.0)  # was (5.0, 9.0): the later alias overwrote the charge
    assert prices.highest("m") == (1.0, 2.0)
    assert total_price(candidate) == entry.total_price("m") == 3.0


def test_load_is_outstanding_requests_per_slot_for_views_and_candidates_alike():
    table = RouteTable(15.0, clock=lambda: 0.0)
    table.put(TWICE)
    obs = Observations(cooldown_sec=1)
    (entry,) = table.select("m", 0.0)
    candidate = candidate_for(entry, "m", obs, obs.now())
    assert outstanding(TWICE) == outstanding(candidate) == 4
    assert load_ratio(TWICE) == load_ratio(candidate) == entry.load == 0.5
    assert load_ratio(NodeView(peer_id="x", in_flight=1)) == 1.0  # unknown capacity counts as one slot
