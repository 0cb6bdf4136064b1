"""The network explorer in a real browser, over a real network with a real liar (issue #23).

A real gateway (this process: uvicorn, libp2p, verification on) and two real ``tooti node``
processes on llama.cpp (SmolLM2): one honest, one in front of a lying model server
(:mod:`tooti.testing.lying_server`, instant fixed answers) that the gateway's canaries quarantine.
Users send real requests with the official openai SDK. Headless Chromium (the distribution's
package, driven over the DevTools protocol by :mod:`tooti.testing.cdp_browser`) opens
``/explorer`` and the test reads what the page shows: both nodes, the model with its counts, the
liar's quarantine and its reason. Then the honest node is killed (SIGKILL, no goodbye) and the
same page, never reloaded, must show it as gone and the model with one node left.

Screenshots go to ``$TOOTI_TEST_ARTIFACTS`` (default ``build/test-artifacts``): the one in
``docs/images/explorer.png`` is the first of them, copied by hand.

Without Chromium the test skips with the reason; under ``CI=true`` it fails instead (``.ci/run``
installs the ``chromium`` package).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import httpx
import openai
import pytest

from tooti.config.model import Config, GatewaySection, HeartbeatSection, ListenSection, StoreSection
from tooti.gateway.app import create_app
from tooti.gateway.launcher import NodeProcess, node_config
from tooti.gateway.p2p import p2p_network
from tooti.gateway.server import ServerThread
from tooti.p2p.identity import load_or_create_identity, peer_id_of
from tooti.testing import eventually
from tooti.testing.cdp_browser import Browser, Page, find_chromium
from tooti.testing.lying_server import LyingServer, lying_app

pytestmark = pytest.mark.live

MODEL = "smollm2"
HEARTBEAT = 0.5
JOIN_TIMEOUT = 90.0
ARTIFACTS = Path(os.environ.get("TOOTI_TEST_ARTIFACTS", Path(__file__).parents[1] / "build" / "test-artifacts"))


def _chromium() -> str:
    binary = find_chromium()
    if binary is None:
        reason = "no Chromium binary (install the 'chromium' package, or set TOOTI_CHROMIUM)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}: required under CI=true")
        print(f"\nskipping: {reason}")  # noqa: T201 - the reason shows locally even without -rs
        pytest.skip(reason)
    return binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _peer(tmp_path: Path, name: str) -> str:
    return peer_id_of(load_or_create_identity(tmp_path / f"{name}.key"))


def _table(base_url: str) -> dict[str, dict[str, object]]:
    data = httpx.get(f"{base_url}/v1/network/nodes", timeout=10).json()["data"]
    return {n["peer_id"]: n for n in data}


def _wait(what: str, check, timeout: float, nodes: dict[str, NodeProcess]):  # type: ignore[no-untyped-def]
    last = None

    def checked():  # type: ignore[no-untyped-def]
        nonlocal last
        for name, node in nodes.items():
            assert node.alive(), f"{name} died: {node.log_tail()}"
        last = check()
        return last

    return eventually(checked, timeout=timeout, interval=0.2, what=lambda: f"{what} (last: {last!r})")


_ROW = """(() => {{
  const tr = document.querySelector('#node-table tr[data-peer="{peer}"]');
  if (!tr) return null;
  const out = {{state: tr.dataset.standing}};
  for (const c of tr.querySelectorAll('[data-col]')) out[c.dataset.col] = c.textContent;
  return out;
}})()"""
_MODEL = """(() => {{
  const tr = document.querySelector('#models tr[data-model="{model}"]');
  if (!tr) return null;
  const out = {{}};
  for (const c of tr.querySelectorAll('[data-col]')) out[c.dataset.col] = c.textContent;
  return out;
}})()"""


def _row(page: Page, peer: str) -> dict[str, str] | None:
    row: dict[str, str] | None = page.evaluate(_ROW.format(peer=peer))
    return row


def _model(page: Page) -> dict[str, str] | None:
    row: dict[str, str] | None = page.evaluate(_MODEL.format(model=MODEL))
    return row


def _fact(page: Page, name: str) -> str:
    value: str = page.evaluate(f"document.querySelector('[data-fact=\"{name}\"] dd').textContent")
    return value


def test_the_explorer_shows_both_nodes_the_model_and_the_quarantine_and_follows_a_node_dying(tmp_path, llama_server):
    chromium = _chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    p2p_port = _free_port()
    config = Config(
        listen=ListenSection(host="127.0.0.1", tcp_port=p2p_port),
        heartbeat=HeartbeatSection(interval_sec=HEARTBEAT),
        gateway=GatewaySection(listen="127.0.0.1:0", store=StoreSection(enabled=False)),
    )
    network, lifespan = p2p_network(config, identity_file=tmp_path / "gateway.key")
    gateway = ServerThread(create_app(config, network, lifespan=[lifespan]), "127.0.0.1", 0)
    base_url = gateway.start()
    bootstrap = f"/ip4/127.0.0.1/tcp/{p2p_port}/p2p/{_peer(tmp_path, 'gateway')}"
    liar_state = LyingServer(llama_server.base_url, "fixed")
    liar_server = ServerThread(lying_app(liar_state), "127.0.0.1", 0)  # type: ignore[arg-type]
    liar_server.start()
    nodes: dict[str, NodeProcess] = {}
    try:
        for name, upstream in (("honest", llama_server.base_url), ("liar", liar_server.base_url)):
            cfg = node_config(bootstrap, tmp_path, name=name, base_url=upstream, heartbeat_sec=HEARTBEAT)
            nodes[name] = NodeProcess.spawn(cfg, tmp_path, name)
        honest, liar = _peer(tmp_path, "honest"), _peer(tmp_path, "liar")
        _wait("both nodes joined", lambda: len(_table(base_url)) == 2, JOIN_TIMEOUT, nodes)
        _wait(
            "the liar is quarantined",
            lambda: _table(base_url)[liar]["gateway"]["standing"] == "quarantined",  # type: ignore[index]
            JOIN_TIMEOUT,
            nodes,
        )
        client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=60)
        for i in range(3):  # real traffic, so the page has the gateway's own measurements to show
            reply = client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": f"Name a colour ({i})."}], max_tokens=8
            )
            assert reply.choices[0].message.content

        with Browser(chromium) as browser:
            page = browser.new_page()
            page.navigate(f"{base_url}/?poll=1")  # `/` redirects to the page
            assert page.evaluate("location.pathname") == "/explorer"
            page.wait_for("document.body.dataset.updated", 20)
            page.evaluate("window.__tootiNotReloaded = true")

            both = page.wait_for(
                f"!!document.querySelector('tr[data-peer=\"{honest}\"]') && "
                f"!!document.querySelector('tr[data-peer=\"{liar}\"]')",
                20,
            )
            assert both
            liar_row = _row(page, liar)
            assert liar_row is not None
            assert liar_row["state"] == "quarantined"
            assert liar_row["standing"].startswith("✕ quarantined")  # in words and a symbol, not only colour
            assert liar_row["reason"].strip() not in ("", "\u2013")  # the verdict's reason, in the gateway's words
            assert liar_row["name"] == "liar"
            honest_row = _row(page, honest)
            assert honest_row is not None
            assert honest_row["state"] != "quarantined"
            assert honest_row["name"] == "honest"
            assert "measured" in honest_row["ttft"]
            assert "answers this gateway" in honest_row["reachability"]
            assert "via the node's outbound connection" in honest_row["reachability"]  # the node dialled the gateway
            model = _model(page)
            assert model is not None
            assert model["nodes"] == "2"
            assert model["quarantined"] == "1"
            assert model["context_length"] not in ("", "\u2013")
            assert int(_fact(page, "Requests since start").replace(",", "")) >= 3
            assert "passed" in _fact(page, "Audits run (canary checks)")
            shot = page.screenshot(ARTIFACTS / "explorer-two-nodes-one-quarantined.png")
            print(f"\nscreenshot: {shot}")  # noqa: T201

            nodes["honest"].proc.kill()  # the honest node dies: no goodbye, its heartbeats just stop
            nodes.pop("honest").stop()  # reaps it and closes its log
            gone = page.wait_for(
                f"document.querySelector('tr[data-peer=\"{honest}\"]')?.dataset.standing === 'left'", 30
            )
            assert gone
            model = _model(page)
            assert model is not None
            assert model["nodes"] == "1"
            assert model["quarantined"] == "1"
            assert model["verified"] == "0"
            assert "left" in (_row(page, honest) or {}).get("last_seen", "")
            liar_row = _row(page, liar)
            assert liar_row is not None
            assert liar_row["state"] == "quarantined"
            assert _fact(page, "Live nodes") == "1"
            assert page.evaluate("window.__tootiNotReloaded === true")  # updated live, not by a reload
            shot = page.screenshot(ARTIFACTS / "explorer-after-a-node-died.png")
            print(f"screenshot: {shot}")  # noqa: T201
            page.close()
    finally:
        for node in nodes.values():
            node.stop()
        gateway.stop()
        liar_server.stop()
