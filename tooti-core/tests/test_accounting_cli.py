"""``tooti keys`` and ``tooti usage`` against a real SQLite store (the embedded default)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tooti.accounting.records import UsageRow
from tooti.accounting.store import AccountingStore, hash_api_key
from tooti.cli.root import app

runner = CliRunner()


def _json(args):
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_keys_lifecycle_in_the_data_dir(tooti_home):
    created = _json(["keys", "create", "--name", "ci", "--budget-tokens", "200", "--rpm", "5", "--models", "a,b"])
    key = created["key"]
    assert key.startswith("tk_")
    assert created["budget"] == 200
    assert created["budget_kind"] == "tokens"
    assert (tooti_home / "gateway.db").exists()
    raw = (tooti_home / "gateway.db").read_bytes() + b"".join(p.read_bytes() for p in tooti_home.glob("gateway.db-*"))
    assert key.encode() not in raw  # only the hash is stored
    assert hash_api_key(key).encode() in raw
    listed = _json(["keys", "list"])
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0]
    shown = _json(["keys", "show", key])
    assert shown["remaining"] == 200
    assert shown["models"] == ["a", "b"]
    rotated = _json(["keys", "rotate", created["id"]])
    assert rotated["key"] != key
    assert rotated["id"] == created["id"]
    assert runner.invoke(app, ["keys", "show", key]).exit_code == 1  # the old secret is gone
    revoked = _json(["keys", "revoke", rotated["key"]])
    assert revoked["status"] == "revoked"
    table = runner.invoke(app, ["keys", "list"])
    assert table.exit_code == 0
    assert "revoked" in table.stdout


def test_keys_create_rejects_two_budgets_and_bad_expiry(tooti_home):
    both = runner.invoke(app, ["keys", "create", "--budget", "1", "--budget-tokens", "2"])
    assert both.exit_code == 1
    assert "not both" in both.output
    bad = runner.invoke(app, ["keys", "create", "--expires", "tomorrow"])
    assert bad.exit_code == 1
    assert "--expires" in bad.output


def test_store_url_from_the_config_file(tmp_path):
    db = tmp_path / "elsewhere.db"
    cfg = tmp_path / "node.yaml"
    cfg.write_text(f"gateway:\n  store:\n    url: sqlite:///{db}\n")
    created = _json(["keys", "create", "-f", str(cfg)])
    assert db.exists()
    assert _json(["keys", "show", created["id"], "--store", f"sqlite:///{db}"])["id"] == created["id"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("gateway:\n  store:\n    url: mysql://x/y\n")
    result = runner.invoke(app, ["keys", "list", "-f", str(bad)])
    assert result.exit_code == 1
    assert "gateway.store.url" in result.output


def test_usage_filters_and_tables(tooti_home):
    key = _json(["keys", "create"])
    store = AccountingStore.open(None)
    store.record(
        [],
        [
            UsageRow(
                request_id="a",
                at=1e9,
                key_id=key["id"],
                model="m1",
                peer_id="12D3KooWnode1",
                prompt_tokens=5,
                completion_tokens=7,
                duration_ms=3.0,
            ),
            UsageRow(
                request_id="b",
                at=1.5e9,
                key_id="config:abc",
                model="m2",
                peer_id="12D3KooWnode2",
                status="error",
                duration_ms=1.0,
            ),
        ],
    )
    store.close()
    everything = _json(["usage"])
    assert [r["request_id"] for r in everything["rows"]] == ["b", "a"]
    mine = _json(["usage", "--key", key["id"]])
    assert [r["request_id"] for r in mine["rows"]] == ["a"]
    assert mine["summary"][0]["completion_tokens"] == 7
    assert [r["request_id"] for r in _json(["usage", "--node", "12D3KooWnode2"])["rows"]] == ["b"]
    assert _json(["usage", "--since", "1d"])["rows"] == []
    table = runner.invoke(app, ["usage"])
    assert table.exit_code == 0
    assert "m1" in table.stdout


def test_receipts_export_and_verify(tooti_home, tmp_path):
    from tooti.accounting.receipts import GatewayCounts, countersign, encode
    from tooti.p2p.identity import generate_identity, peer_id_of
    from tooti.wire.receipt import NodeReceipt, request_hash, signing_bytes

    node, gateway = generate_identity(), generate_identity()
    peer = peer_id_of(node)
    lines = []
    for i in range(3):
        receipt = NodeReceipt(
            request=request_hash(f"r{i}"),
            model="m",
            prompt_tokens=2,
            completion_tokens=i,
            ttft_ms=None,
            duration_ms=1.0,
            node=peer,
            at=1e9 + i,
        )
        sig = node.private_key.sign(signing_bytes(receipt))
        counts = GatewayCounts(prompt_tokens=2, completion_tokens=i, token_chunks=None)
        lines.append(encode(countersign(receipt, sig, counts, [] if i else ["no_usage_frame"], gateway)).decode())
    store = AccountingStore.open(None)
    store.record(
        [],
        [
            UsageRow(
                request_id=f"r{i}", at=1e9 + i, key_id=None, model="m", peer_id=peer, duration_ms=1.0, receipt=line
            )
            for i, line in enumerate(lines)
        ]
        + [UsageRow(request_id="x", at=1e9, key_id=None, model="m", peer_id="12D3KooWother", duration_ms=1.0)],
    )
    store.close()
    out = tmp_path / "r.jsonl"
    exported = runner.invoke(app, ["receipts", "export", "--node", peer, "--out", str(out)])
    assert exported.exit_code == 0
    assert out.read_text().splitlines() == lines
    ok = runner.invoke(app, ["receipts", "verify", str(out)])
    assert ok.exit_code == 0, ok.output
    assert "3 valid, 0 rejected, 1 flagged" in ok.output
    data = bytearray(out.read_bytes())
    data[40] = ord("0") if data[40] != ord("0") else ord("1")
    out.write_bytes(bytes(data))
    bad = runner.invoke(app, ["receipts", "verify", str(out)])
    assert bad.exit_code == 1
    assert "2 valid, 1 rejected" in bad.output
