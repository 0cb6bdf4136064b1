"""Audits of real user traffic (issue #21) against real adversaries on a real gateway.

Real ``tooti node`` processes front honest llama.cpp (SmolLM2) or a lying model server
(:mod:`tooti.testing.lying_server`) that proxies every model question to the same llama.cpp, so
the liar announces the real model with real load figures. Users are the official openai SDK.
Each test runs once with the organic audits on (the defence) and checks the adversary loses; the
``audits off`` variants prove the same adversary wins without them (the test can fail).

- **Canary evader**: honest on anything shaped like a check (temperature 0 with a seed, what the
  prober's canaries look like), garbage to users. Canaries pass; only audits of user requests see it.
- **Usage x3**: the real model's text with every token count tripled; the node signs what its
  server claims. The audit's replay counts the tokens on the reference.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

pytestmark = pytest.mark.live

MODEL = "smollm2"
AUDITS_ON = {"audit_share": 0.02, "audit_new_share": 0.5}
AUDITS_OFF = {"audit_share": 0.0, "audit_new_share": 0.0}
LOAD_SEC = 40.0
CAUGHT_BY_SEC = 25.0
"""Without a reference, no answer from the evader after this far into the load."""


def _adversaries() -> Any:
    """The real-node fixtures of ``test_trust_adversaries_llamacpp`` (Net, Load), loaded by path."""
    name = "tooti_tests_trust_adversaries"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("test_trust_adversaries_llamacpp.py")
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


adv = _adversaries()


def _net(tmp_path: Path, llama_url: str, audits: dict[str, float]) -> Any:
    """The adversary tests' :class:`Net` with these audit shares."""
    return adv.Net(tmp_path, llama_url, verification=dict(audits))


@dataclass
class EvaderRun:
    """What users saw of a canary evader during the load window."""

    by_liar: int
    total: int
    standing: str
    reason: str
    last_answer_at: float | None
    """Seconds into the load of the liar's last answer (None: it answered nobody)."""
    honest_standings: list[str]
    audits_passed: int
    """Audits of the liar's user answers that passed (what would give it a full share of users)."""
    errors: list[str]


def _run_evader(tmp_path: Path, llama_url: str, audits: dict[str, float], *, reference: bool) -> EvaderRun:
    net = _net(tmp_path, llama_url, audits)
    if reference:
        net.references = (net.peer_id("reference"),)
    try:
        net.start_gateway(store=False)
        if reference:
            net.spawn("reference", llama_url)
        honest = [f"honest-{i}" for i in (1, 2)]
        for name in honest:
            net.spawn(name, llama_url)
        liar = net.liar("evader", "evader")
        net.wait_nodes(4 if reference else 3)
        load = adv.Load(net.base_url)
        load.start()
        time.sleep(LOAD_SEC)  # the load window IS the measurement: users run for a fixed time
        load.stop()
        by_liar, total = adv._share(load, {liar.peer_id})
        table = net.table()
        row = table[liar.peer_id]["gateway"]
        answered = [t for t, p in load.records if p == liar.peer_id]
        run = EvaderRun(
            by_liar=by_liar,
            total=total,
            standing=str(row["standing"]),
            reason=str(row.get("standing_reason")),
            last_answer_at=max(answered) if answered else None,
            honest_standings=[str(table[net.peer_id(n)]["gateway"]["standing"]) for n in honest],
            audits_passed=int(row.get("audits_passed", 0)),
            errors=load.errors,
        )
        print(  # noqa: T201
            f"\nevader ({audits}, reference={reference}): answered {by_liar} of {total} "
            f"({100 * by_liar / max(total, 1):.2f} %), last at {run.last_answer_at}, honest to checks "
            f"{liar.state.honest}, lied {liar.state.lied}; standing {run.standing}: {run.reason}; "
            f"honest nodes {run.honest_standings}"
        )
        return run
    finally:
        net.stop()


def test_canary_evader_is_quarantined_by_audits_of_user_requests(tmp_path, llama_server):
    """With the gateway operator's own node as a reference, the evader gets under 2 % of users.

    Passing every canary makes it trusted (a vote in checks), but until an audit of its user
    answers passes it takes only a probation share; its first audited answer quarantines it. In
    some runs the probation share gives it no user at all in the window (measured: 0 of 141 and
    0 of 111): nothing to audit then, and nothing served either; either way it never passes one.
    """
    run = _run_evader(tmp_path, llama_server.base_url, AUDITS_ON, reference=True)
    assert run.total > 30, (run.total, run.errors[:5])
    assert run.by_liar < 0.02 * run.total, f"the evader answered {run.by_liar} of {run.total}"
    assert run.audits_passed == 0, run
    assert run.standing == "quarantined" or run.by_liar <= 1, run
    assert run.honest_standings == ["trusted", "trusted"], run


def test_canary_evader_is_caught_by_audits_without_a_reference(tmp_path, llama_server):
    """No reference: the audits wait for nodes trusted by canaries, so the evader serves users until then.

    Until some node has passed an audit, the gateway cannot tell the evader from the honest nodes
    (all pass every canary) and the fastest wins most users (measured: 668 of 764); the bound here
    is that it is caught, answers nobody after :data:`CAUGHT_BY_SEC` (measured: last at 14.6 s),
    and that its replays of the honest nodes' audits frame neither of them.
    """
    run = _run_evader(tmp_path, llama_server.base_url, AUDITS_ON, reference=False)
    assert run.total > 30, (run.total, run.errors[:5])
    # In some runs routing gives it no user in the window (seen in a loaded run: 0 of 76): nothing
    # served, nothing to audit; otherwise it must be caught.
    assert run.standing == "quarantined" or run.by_liar == 0, run
    assert run.last_answer_at is None or run.last_answer_at < CAUGHT_BY_SEC, run
    assert run.honest_standings == ["trusted", "trusted"], run


def test_canary_evader_wins_without_audits(tmp_path, llama_server):
    """The same evader with audits off: canaries alone never catch it (the defence above is the audits)."""
    run = _run_evader(tmp_path, llama_server.base_url, AUDITS_OFF, reference=True)
    assert run.total > 30, (run.total, run.errors[:5])
    assert run.standing != "quarantined", run
    assert run.by_liar >= 0.02 * run.total, f"the evader answered only {run.by_liar} of {run.total} without audits"


def _true_tokens(llama_url: str, text: str) -> int:
    r = httpx.post(f"{llama_url}/tokenize", json={"content": text}, timeout=10)
    r.raise_for_status()
    return len(r.json()["tokens"])


def _run_inflator(tmp_path: Path, llama_url: str, audits: dict[str, float]) -> dict[str, object]:
    net = _net(tmp_path, llama_url, audits)
    try:
        net.start_gateway(store=False)
        for i in (1, 2):
            net.spawn(f"honest-{i}", llama_url)
        liar = net.liar("inflator", "inflate")
        net.wait_nodes(3)
        client = openai.OpenAI(base_url=f"{net.base_url}/v1", api_key="unused", max_retries=0, timeout=60)
        rows: list[tuple[float, str, int, int, str]] = []
        detected_at: float | None = None
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < LOAD_SEC:
            n += 1
            raw = client.chat.completions.with_raw_response.create(
                model=MODEL, messages=[{"role": "user", "content": f"Question {n}: name a fruit."}], max_tokens=8
            )
            reply = raw.parse()
            assert reply.usage is not None
            text = reply.choices[0].message.content or ""
            # A stop on the end-of-turn token counts that token, which the text does not show.
            eos = 1 if reply.choices[0].finish_reason == "stop" else 0
            rows.append((time.monotonic() - t0, raw.headers["x-tooti-node"], reply.usage.completion_tokens, eos, text))
            quarantined = n % 5 == 0 and net.table()[liar.peer_id]["gateway"]["standing"] == "quarantined"
            if detected_at is None and quarantined:
                detected_at = time.monotonic() - t0
        row = net.table()[liar.peer_id]["gateway"]
        after = [r for r in rows if detected_at is not None and r[0] >= detected_at]
        billed = sum(r[2] for r in after)
        true = sum(min(_true_tokens(llama_url, r[4]) + r[3], 8) for r in after)
        by_liar = sum(1 for r in rows if r[1] == liar.peer_id)
        by_liar_before = sum(r[2] for r in rows if r[1] == liar.peer_id)
        result = {
            "standing": row["standing"],
            "kind": row.get("standing_kind"),
            "reason": row.get("standing_reason"),
            "detected_at": detected_at,
            "requests": len(rows),
            "by_liar": by_liar,
            "liar_billed": by_liar_before,
            "after": len(after),
            "liar_after": sum(1 for r in after if r[1] == liar.peer_id),
            "billed_after": billed,
            "true_after": true,
        }
        print(f"\ninflate ({audits}): {result}")  # noqa: T201
        return result
    finally:
        net.stop()


def test_usage_inflation_is_quarantined_and_billing_is_honest_after(tmp_path, llama_server):
    # Once the honest nodes have passed audits, the inflator (trusted by canaries only) is served
    # at the probation share, 5 % by default: in one CI run that gave it 2 of 132 requests in 40 s,
    # too few to audit or to test the audit's count. A 30 % share gives it enough users to test.
    r = _run_inflator(tmp_path, llama_server.base_url, {**AUDITS_ON, "probation_share": 0.3})
    if r["standing"] != "quarantined" and r["by_liar"] <= 1:
        # Routing gave it (almost) no user in the window (seen in CI: 1 answer in 40 s): nothing to
        # audit and nothing overbilled; say so instead of calling it a detection.
        print(f"\ninflate: the liar answered {r['by_liar']} request(s), too few to audit")  # noqa: T201
        assert r["liar_billed"] <= 3 * 8, r
        return
    assert r["standing"] == "quarantined", r
    assert r["kind"] == "usage", r
    assert r["after"], r
    assert r["liar_after"] == 0, r
    billed, true = r["billed_after"], r["true_after"]
    assert isinstance(billed, int)
    assert isinstance(true, int)
    assert true > 0
    assert abs(billed - true) <= 0.01 * true, r


def test_usage_inflation_is_not_seen_without_audits(tmp_path, llama_server):
    r = _run_inflator(tmp_path, llama_server.base_url, AUDITS_OFF)
    assert r["standing"] != "quarantined", r
    assert r["by_liar"], r
