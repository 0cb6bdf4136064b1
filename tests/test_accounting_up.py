"""Issue #14's done-when on ``tooti up``: a token budget is served, recorded with the node, refused when
spent (429 insufficient_quota), shown by ``tooti usage`` and ``GET /v1/usage``, receipts verify, and
everything survives a restart. Real subprocesses, real llama.cpp, real SQLite in the data dir."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

import httpx
import openai
import pytest

from tooti.testing import eventually

# `tooti up` may take START_TIMEOUT (240 s) to start on a cold 2-core machine, more than the suite default.
pytestmark = [pytest.mark.live, pytest.mark.timeout(600)]

START_TIMEOUT = 240.0
BODY = {"model": "smollm2-135m", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 16}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Up:
    def __init__(self, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tooti", "up", "--port", str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.reader = threading.Thread(target=self._pump, daemon=True)
        self.reader.start()

    def _pump(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace")
            self.lines.append(line)
            if "Ctrl-C stops everything" in line:
                self.ready.set()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.reader.join(10)
        self.proc.stdout.close()


def _tooti(env, *args) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tooti", *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_token_budget_on_tooti_up_survives_restart(tmp_path):
    env = {**os.environ, "TOOTI_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    created = _tooti(env, "keys", "create", "--budget-tokens", "200", "--json")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    up = Up(env)
    try:
        assert up.ready.wait(START_TIMEOUT), "".join(up.lines)
        assert "gateway.db" in "".join(up.lines)
        headers = {"authorization": f"Bearer {key['key']}"}
        statuses = []
        with httpx.Client(base_url=up.base, timeout=120) as http:
            for _ in range(40):
                r = http.post("/v1/chat/completions", json=BODY, headers=headers)
                statuses.append(r.status_code)
                if r.status_code == 429:
                    break
                assert r.status_code == 200, r.text
            assert statuses[-1] == 429, statuses
            assert r.json()["error"]["code"] == "insufficient_quota"
            # the official SDK maps it to its RateLimitError with OpenAI's code
            with openai.OpenAI(base_url=f"{up.base}/v1", api_key=key["key"], max_retries=0) as client:
                with pytest.raises(openai.RateLimitError) as err:
                    client.chat.completions.create(**BODY)
                assert err.value.code == "insufficient_quota"
            served = statuses.count(200)
            # Rows reach the database in batches (store.flush_interval_sec, 0.25 s): the last request's
            # row may still be queued when the report is read right after it.

            def all_rows_in() -> dict[str, Any] | None:
                report = http.get("/v1/usage", headers=headers).json()
                return report if report["totals"]["requests"] >= served else None

            report = eventually(
                all_rows_in, timeout=5.0, interval=0.1, what=f"fewer than {served} requests in the report"
            )
        assert served >= 1
        assert report["totals"]["requests"] == served
        assert report["key"]["spent"] >= 200 - 40  # refused only once the budget was (nearly) used
    finally:
        up.stop()
    usage = json.loads(_tooti(env, "usage", "--key", key["id"], "--json").stdout)
    rows = usage["rows"]
    assert len(rows) == served
    peers = {r["peer_id"] for r in rows}
    assert len(peers) == 1
    assert next(iter(peers)).startswith("12D3KooW")
    assert all(r["status"] == "ok" and r["completion_tokens"] > 0 and r["receipt"] for r in rows)
    assert not any(r["receipt_mismatch"] for r in rows)
    # receipts: export, verify, one changed byte is rejected
    out = tmp_path / "receipts.jsonl"
    assert _tooti(env, "receipts", "export", "--node", next(iter(peers)), "--out", str(out)).returncode == 0
    verified = _tooti(env, "receipts", "verify", str(out))
    assert verified.returncode == 0, verified.stdout
    assert f"{served} valid, 0 rejected" in verified.stdout
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0x01
    out.write_bytes(bytes(data))
    assert _tooti(env, "receipts", "verify", str(out)).returncode == 1
    # restart: the key, its spend and its rows are still there, and it is still refused
    again = Up(env)
    try:
        assert again.ready.wait(START_TIMEOUT), "".join(again.lines)
        r = httpx.post(f"{again.base}/v1/chat/completions", json=BODY, headers=headers, timeout=120)
        assert r.status_code == 429
        assert len(httpx.get(f"{again.base}/v1/usage", headers=headers, timeout=30).json()["recent"]) == served
    finally:
        again.stop()
    shown = json.loads(_tooti(env, "keys", "show", key["id"], "--json").stdout)
    assert shown["spent"] == report["key"]["spent"]
    assert shown["reserved"] == 0
