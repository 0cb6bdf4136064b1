"""Two ``tooti gateway start`` processes on one real PostgreSQL share keys, budgets and limits.

A node process fronting the session's real llama.cpp server joins both gateways. 32 concurrent
requests split across the gateways race for one small token budget: the finalized spend must not
exceed the budget by more than one request's reservation. A key revoked through the store is
refused by both gateways within 5 s, and an rpm limit holds across them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tooti.accounting.store import AccountingStore
from tooti.gateway.launcher import NodeProcess, node_config
from tooti.testing import eventually

pytestmark = pytest.mark.live

BODY = {"model": "smollm2", "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 8}
_ADDR = re.compile(r"(/ip4/127\.0\.0\.1/tcp/\d+/p2p/\w+)")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GatewayProcess:
    def __init__(self, name: str, workdir, store_url: str) -> None:
        self.port = _free_port()
        config = workdir / f"{name}.yaml"
        config.write_text(
            json.dumps(
                {
                    "listen": {"host": "127.0.0.1", "tcp_port": 0},
                    "heartbeat": {"interval_sec": 0.5},
                    "gateway": {
                        "listen": f"127.0.0.1:{self.port}",
                        "auth_mode": "required",
                        "store": {"url": store_url, "key_refresh_sec": 0.5, "flush_interval_sec": 0.1},
                    },
                }
            )
        )
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        env = {**os.environ, "TOOTI_HOME": str(workdir / f"{name}-home")}
        cmd = [sys.executable, "-m", "tooti", "gateway", "start", "-f", str(config), "--log-level", "info"]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def p2p_addr(self, timeout: float = 60.0) -> str:
        def logged() -> re.Match[str] | None:
            assert self.proc.poll() is None, self.log()
            return _ADDR.search(self.log())

        found = eventually(
            logged, timeout=timeout, interval=0.2, what=lambda: "no p2p address in the gateway log:\n" + self.log()
        )
        return found.group(1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/ready", timeout=5).status_code == 200
    except httpx.ConnectError:
        return False


@pytest.fixture(scope="module")
def shared_db(postgres_server_url):
    from tooti.testing.postgres import create_database, drop_database

    url = create_database(postgres_server_url)
    yield url
    drop_database(url)


@pytest.fixture(scope="module")
def cluster(llama_server, shared_db, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("two-gateways")
    gateways = [GatewayProcess(n, workdir, shared_db) for n in ("gw-a", "gw-b")]
    node = None
    try:
        addrs = [g.p2p_addr() for g in gateways]
        config = node_config(addrs[0], workdir, name="node-1", base_url=llama_server.base_url, heartbeat_sec=0.5)
        config["network"]["bootstrap_peers"] = addrs
        node = NodeProcess.spawn(config, workdir, "node-1")
        deadline = time.monotonic() + 90
        for g in gateways:

            def up(g: GatewayProcess = g) -> bool:  # the p2p address is logged before the HTTP server listens
                assert node.alive(), node.log_tail()
                return _ready(g.base)

            eventually(
                up,
                timeout=max(0.0, deadline - time.monotonic()),
                interval=0.2,
                what=lambda g=g: g.log() + node.log_tail(),
            )
        yield gateways
    finally:
        if node is not None:
            node.stop()
        for g in gateways:
            g.stop()


@pytest.fixture
def store(shared_db):
    s = AccountingStore.open(shared_db)
    yield s
    s.close()


def _post(base: str, key: str) -> int:
    r = httpx.post(f"{base}/v1/chat/completions", json=BODY, headers={"authorization": f"Bearer {key}"}, timeout=120)
    return r.status_code


def _wait_known(gateways, key: str) -> None:
    """New keys reach each gateway within key_refresh_sec; wait so the race starts fair."""
    deadline = time.monotonic() + 10
    for g in gateways:
        eventually(
            lambda g=g: _post_usage(g.base, key) != 401, timeout=max(0.0, deadline - time.monotonic()), interval=0.1
        )


def _post_usage(base: str, key: str) -> int:
    return httpx.get(f"{base}/v1/usage", headers={"authorization": f"Bearer {key}"}, timeout=30).status_code


def test_32_concurrent_requests_on_two_gateways_respect_one_budget(cluster, store):
    budget = 120
    key, rec = store.create_key(budget=budget, budget_kind="tokens")
    _wait_known(cluster, key)
    barrier = threading.Barrier(32)

    def go(i: int) -> int:
        barrier.wait()
        return _post(cluster[i % 2].base, key)

    with ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(go, range(32)))
    assert set(statuses) <= {200, 429}, statuses
    served = statuses.count(200)
    assert served >= 1
    assert statuses.count(429) >= 1
    eventually(
        lambda: store.find_key(rec.id).reserved == 0 and len(store.usage_rows(key_id=rec.id, limit=100)) == served,
        timeout=15,
        interval=0.2,
        what=lambda: f"reserved {store.find_key(rec.id).reserved}, rows {len(store.usage_rows(key_id=rec.id))}",
    )
    after = store.find_key(rec.id)
    rows = store.usage_rows(key_id=rec.id, limit=100)
    assert after.reserved == 0
    assert len(rows) == served
    one_reservation = len(json.dumps(BODY)) // 4 + 1 + BODY["max_tokens"] + 64  # body estimate, chat template
    assert after.spent <= budget + one_reservation, (after.spent, served)
    assert after.spent == sum(r.prompt_tokens + r.completion_tokens for r in rows)
    assert {r.peer_id for r in rows} != {None}
    assert all(r.receipt for r in rows)
    assert not any(r.receipt_mismatch for r in rows)


def test_revoked_key_is_refused_by_both_gateways_within_5s(cluster, store):
    key, rec = store.create_key()
    _wait_known(cluster, key)
    assert [_post(g.base, key) for g in cluster] == [200, 200]

    def receipted() -> list | None:
        rows = store.usage_rows(key_id=rec.id)
        return rows if len(rows) >= 2 and all(r.receipt for r in rows) else None

    rows = eventually(receipted, timeout=10, interval=0.1)
    # each gateway countersigned the receipt of the request it served
    assert len({json.loads(r.receipt)["gateway"] for r in rows}) == 2
    revoke = subprocess.run(
        [sys.executable, "-m", "tooti", "keys", "revoke", rec.id, "--store", store.engine.url.render_as_string(False)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert revoke.returncode == 0, revoke.stderr
    pending = set(range(len(cluster)))

    def all_refuse() -> bool:
        for i in list(pending):
            if _post(cluster[i].base, key) == 401:
                pending.discard(i)
        return not pending

    eventually(all_refuse, timeout=5.0, what=lambda: f"gateways {pending} still accept the revoked key")


def test_rpm_limit_holds_across_gateways(cluster, store):
    key, _ = store.create_key(rpm=4)
    _wait_known(cluster, key)
    eventually(lambda: time.time() % 60 <= 40, timeout=25, interval=0.5)  # all six requests in one minute window
    statuses = [_post(cluster[i % 2].base, key) for i in range(6)]
    assert statuses.count(200) == 4, statuses
    assert statuses.count(429) == 2
