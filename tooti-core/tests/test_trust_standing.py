"""Reputation decay, standings (probation, trusted, quarantine) and the answer checks."""

from __future__ import annotations

import random

from tooti.config.model import VerificationSection
from tooti.routing.protocol import Candidate
from tooti.trust.answer_checks import AnswerHistory, CanaryAnswer, single_answer_problem
from tooti.trust.canary_prompts import draw_prompt, pool_size
from tooti.trust.reputation import Reputation
from tooti.trust.standing import Standings


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_reputation_starts_neutral_drops_on_failure_and_fades():
    clock = Clock()
    rep = Reputation(half_life_s=100, clock=clock)
    assert rep.score("a") == 0.5
    rep.bad("a", 5)
    low = rep.score("a")
    assert low < 0.2
    clock.t += 1000  # ten half-lives: the failure is nearly forgotten
    assert rep.score("a") > 0.45
    rep.good("b", 10)
    assert rep.score("b") > 0.9


def _cands(*peers):
    return [Candidate(peer_id=p, models=frozenset({"m"})) for p in peers]


def test_probation_trust_quarantine_and_recheck():
    clock = Clock()
    section = VerificationSection(probation_checks=2, probation_share=0.0, quarantine_sec=60)
    rep = Reputation(clock=clock)
    st = Standings(section, rep.score, rng=random.Random(1), clock=clock)
    assert st.state("new") == "probation"
    # Nobody trusted yet: probation nodes serve (the model must not vanish during warm-up), one per request.
    assert [c.peer_id for c in st.routable(_cands("new", "other"))] in (["new"], ["other"])
    st.passed("other")
    st.passed("other")
    assert st.state("other") == "trusted"
    # Now the probation node gets its share (0 here) and the trusted one the rest.
    assert [c.peer_id for c in st.routable(_cands("new", "other"))] == ["other"]
    st.failed("new", "fixed reply")
    assert st.state("new") == "quarantined"
    assert st.get("new").reason == "fixed reply"
    assert [c.peer_id for c in st.routable(_cands("new"))] == []  # never, even alone
    clock.t += 61
    assert st.state("new") == "probation"
    assert st.due("new")


def test_probation_share_is_bounded():
    clock = Clock()
    section = VerificationSection(probation_share=0.05)
    st = Standings(section, Reputation(clock=clock).score, rng=random.Random(7), clock=clock)
    for _ in range(3):
        st.passed("good")
    picked = sum("new" in [c.peer_id for c in st.routable(_cands("good", "new"))] for _ in range(4000))
    assert 100 < picked < 320  # about 5 % of 4000


def test_reputation_floor_filters_when_better_nodes_exist():
    clock = Clock()
    rep = Reputation(clock=clock)
    st = Standings(VerificationSection(min_reputation=0.3), rep.score, clock=clock)
    rep.bad("bad", 10)
    assert [c.peer_id for c in st.routable(_cands("bad", "ok"))] == ["ok"]
    assert [c.peer_id for c in st.routable(_cands("bad"))] == ["bad"]


def test_fixed_reply_majority_and_usage_checks():
    history = AnswerHistory()
    assert history.add("rogue", "p1", "Sure! Here you go.") is None
    assert history.add("rogue", "p2", "sure!  here you go.") is None
    assert "fixed reply" in (history.add("rogue", "p3", "Sure! Here you go.") or "")
    assert history.add("honest", "p1", "4") is None
    assert history.add("honest", "p1", "4") is None  # the same prompt twice is fine
    assert single_answer_problem(CanaryAnswer(peer_id="a", text="x", completion_tokens=900), 16)
    assert single_answer_problem(CanaryAnswer(peer_id="a", text=" "), 16)
    assert single_answer_problem(CanaryAnswer(peer_id="a", text="x", completion_tokens=3, prompt_tokens=9), 16) is None


def test_prompt_pool_is_varied():
    rng = random.Random(3)
    prompts = {draw_prompt(rng) for _ in range(500)}
    assert len(prompts) > 450
    assert pool_size() > 1000


def test_during_warm_up_checked_nodes_go_first():
    clock = Clock()
    st = Standings(VerificationSection(probation_checks=2), Reputation(clock=clock).score, clock=clock)
    assert [c.peer_id for c in st.routable(_cands("a", "b"))] in (["a"], ["b"])
    st.passed("a", corroborated=False)  # passing alone proves nothing: no preference
    assert st.state("a") == "probation"
    st.passed("b")  # one confirmed check passed, not trusted yet
    assert st.state("b") == "probation"
    assert [c.peer_id for c in st.routable(_cands("a", "b"))] == ["b"]


def test_with_audits_on_canaries_alone_do_not_earn_a_full_share_of_users():
    """A canary evader passes every canary: until an audit of its user answers passes, it stays bounded."""
    clock = Clock()
    section = VerificationSection(probation_checks=2, probation_share=0.0, audit_new_share=0.5)
    rep = Reputation(clock=clock)
    st = Standings(section, rep.score, rng=random.Random(1), clock=clock)
    for peer in ("honest", "evader"):
        st.passed(peer)
        st.passed(peer)
        assert st.state(peer) == "trusted"
    # No audit has passed yet (none may ever, with a backend that gives no logprobs): served as without audits.
    assert {c.peer_id for c in st.routable(_cands("honest", "evader"))} == {"honest", "evader"}
    st.audit_passed("honest")
    for _ in range(20):
        assert [c.peer_id for c in st.routable(_cands("honest", "evader"))] == ["honest"]
    assert st.weight("evader") > 0  # its canaries still earn it a vote in checks
    st.failed("honest", "audit")
    assert st.get("honest").audited is False


def test_with_audits_on_a_reference_holds_canary_trusted_nodes_to_probation_from_the_start():
    clock = Clock()
    section = VerificationSection(
        probation_checks=2, probation_share=0.0, references=["ref"], audit_share=0.02, audit_new_share=0.5
    )
    st = Standings(section, Reputation(clock=clock).score, rng=random.Random(1), clock=clock)
    st.passed("evader")
    st.passed("evader")
    assert st.state("evader") == "trusted"
    for _ in range(20):
        assert [c.peer_id for c in st.routable(_cands("ref", "evader"))] == ["ref"]


def test_with_audits_off_canaries_make_a_node_fully_routable():
    clock = Clock()
    section = VerificationSection(probation_checks=2, probation_share=0.0, audit_new_share=0.0)
    st = Standings(section, Reputation(clock=clock).score, rng=random.Random(1), clock=clock)
    for peer in ("a", "b"):
        st.passed(peer)
        st.passed(peer)
    assert {c.peer_id for c in st.routable(_cands("a", "b"))} == {"a", "b"}
