"""The accounting store on real SQLite and real PostgreSQL: migrations, keys, budgets, limits, usage."""

from __future__ import annotations

import threading
import time

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from tooti.accounting.engine import open_engine
from tooti.accounting.migrate import current_revision, revisions, upgrade
from tooti.accounting.records import Settlement, UsageRow
from tooti.accounting.schema import metadata
from tooti.accounting.store import AccountingStore, KeyNotFound, QuotaExceeded, RateLimited, hash_api_key


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(db_url):
    s = AccountingStore.open(db_url)
    yield s
    s.close()


def test_migrations_from_empty_reach_exactly_the_schema(db_url):
    engine = open_engine(db_url)
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == revisions()[-1]
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    upgrade(engine)  # idempotent
    engine.dispose()


# Rows valid at each version, inserted before upgrading the rest of the way.
_SEED = {
    "0001": [
        "INSERT INTO api_keys (id, name, key_hash, prefix, created_at, updated_at, budget_kind, budget, spent,"
        " reserved) VALUES ('key_old', 'old', 'sha256:" + "a" * 64 + "', 'tk_old', 1, 1, 'tokens', 100, 40, 0)"
    ],
    "0002": [
        "INSERT INTO usage (request_id, at, key_id, model, peer_id, prompt_tokens, completion_tokens, cost,"
        " duration_ms, status, failovers) VALUES ('r1', 10, 'key_old', 'm', 'peer', 3, 4, 0, 5, 'ok', 0)"
    ],
}


@pytest.mark.parametrize("start", revisions()[:-1])
def test_migrations_from_each_earlier_version_keep_the_data(db_url, start):
    engine = open_engine(db_url)
    for rev in revisions():
        upgrade(engine, rev)
        with engine.begin() as conn:
            for sql in _SEED.get(rev, []):
                conn.execute(text(sql))
        if rev == start:
            break
    upgrade(engine)
    assert current_revision(engine) == revisions()[-1]
    store = AccountingStore(engine)
    old = store.find_key("key_old")
    assert (old.budget, old.spent) == (100, 40)
    if start >= "0002":
        row = store.usage_rows(key_id="key_old")[0]
        assert (row.prompt_tokens, row.completion_tokens, row.receipt) == (3, 4, None)
    assert "receipt" in {c["name"] for c in inspect(engine).get_columns("usage")}
    engine.dispose()


def test_keys_create_find_revoke_rotate(store):
    key, rec = store.create_key(name="alice", budget=200, budget_kind="tokens", rpm=5, models=["a", "b"])
    assert key.startswith("tk_")
    assert rec.key_hash == hash_api_key(key)
    assert key not in repr(rec)
    assert store.find_key(key).id == rec.id
    assert store.find_key(rec.id).models == ("a", "b")
    assert store.find_key(rec.key_hash).name == "alice"
    before = store.keys_version()
    new_key, rotated = store.rotate_key(rec.id)
    assert rotated.id == rec.id
    assert rotated.budget == 200
    with pytest.raises(KeyNotFound):
        store.find_key(key)
    assert store.find_key(new_key).id == rec.id
    assert store.keys_version() != before
    revoked = store.revoke_key(new_key)
    assert revoked.revoked_at is not None
    assert rec.key_hash not in store.usable_keys()
    assert rotated.key_hash not in store.usable_keys()
    with pytest.raises(ValueError, match="revoked"):
        store.rotate_key(rec.id)


def test_spend_does_not_change_the_key_version(store):
    _, rec = store.create_key(budget=1000, budget_kind="tokens")
    version = store.keys_version()
    rid = store.admit(rec, 10)
    store.record([Settlement(key_id=rec.id, reservation_id=rid, reserved=10, spent=7, tokens=7, at=time.time())], [])
    assert store.keys_version() == version
    assert store.find_key(rec.id).spent == 7
    assert store.find_key(rec.id).reserved == 0
    assert store.find_key(rec.id).last_used_at is not None


def test_budget_is_atomic_under_concurrency(store):
    """32 threads race for a budget of 100 with reservations of 30: exactly 4 get in (0, 30, 60, 90 < 100)."""
    _, rec = store.create_key(budget=100, budget_kind="tokens")
    admitted, refused = [], []
    barrier = threading.Barrier(32)

    def go():
        barrier.wait()
        try:
            admitted.append(store.admit(rec, 30))
        except QuotaExceeded:
            refused.append(1)

    threads = [threading.Thread(target=go) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(admitted) == 4
    assert len(refused) == 28
    assert store.find_key(rec.id).reserved == 120
    for rid in admitted:
        store.record([Settlement(key_id=rec.id, reservation_id=rid, reserved=30, spent=25, tokens=25, at=1.0)], [])
    after = store.find_key(rec.id)
    assert (after.spent, after.reserved) == (100, 0)
    with pytest.raises(QuotaExceeded):
        store.admit(rec, 1)


def test_release_gives_the_reservation_back_once(store):
    _, rec = store.create_key(budget=50, budget_kind="money")
    rid = store.admit(rec, 50)
    with pytest.raises(QuotaExceeded):
        store.admit(rec, 1)
    assert store.release(rid) is True
    assert store.release(rid) is False  # idempotent: a second release subtracts nothing
    # A settlement arriving after the release must not subtract the reservation again.
    store.record([Settlement(key_id=rec.id, reservation_id=rid, reserved=50, spent=0, tokens=0, at=1.0)], [])
    assert store.find_key(rec.id).reserved == 0
    assert store.admit(rec, 1) is not None


def test_stale_reservations_of_a_dead_gateway_are_released(store):
    _, rec = store.create_key(budget=10, budget_kind="tokens")
    store.admit(rec, 10, now=time.time() - 1000)
    with pytest.raises(QuotaExceeded):
        store.admit(rec, 1)
    assert store.release_stale(600) == 1
    assert store.admit(rec, 1) is not None


def test_revoked_key_is_refused_at_admission(store):
    _, rec = store.create_key(budget=10, budget_kind="tokens")
    store.revoke_key(rec.id)
    with pytest.raises(QuotaExceeded):
        store.admit(rec, 1)


def test_rpm_limit_and_refused_budget_gives_the_request_back(store):
    _, rec = store.create_key(rpm=3)
    now = 120.0 * 60 + 1
    for _ in range(3):
        assert store.admit(rec, 0, now=now) is None
    with pytest.raises(RateLimited) as err:
        store.admit(rec, 0, now=now)
    assert 0 < err.value.retry_after_s <= 60
    assert store.admit(rec, 0, now=now + 60) is None  # next minute
    _, both = store.create_key(rpm=2, budget=5, budget_kind="tokens")
    store.admit(both, 5, now=now)
    with pytest.raises(QuotaExceeded):
        store.admit(both, 5, now=now)  # budget refuses: the rate window must not keep this request
    with pytest.raises(QuotaExceeded):
        store.admit(both, 5, now=now)  # still the budget, not the rpm, says no


def test_tpm_limit_counts_settled_tokens(store):
    _, rec = store.create_key(tpm=100)
    now = 300.0 * 60 + 5
    store.admit(rec, 0, now=now)
    store.record(
        [Settlement(key_id=rec.id, reservation_id=None, reserved=0, spent=0, tokens=120, at=now, count_tokens=True)], []
    )
    with pytest.raises(RateLimited, match="100 tokens"):
        store.admit(rec, 0, now=now + 1)


def test_usage_rows_and_summary(store):
    day = 20000 * 86400.0
    rows = [
        UsageRow(
            request_id=f"r{i}",
            at=day + i,
            key_id="k1" if i % 2 else "k2",
            model="m",
            peer_id="p1",
            prompt_tokens=10,
            completion_tokens=i,
            cost=0.5,
            ttft_ms=12.0,
            duration_ms=30.0,
            status="ok" if i < 5 else "error",
            failovers=i % 3,
        )
        for i in range(6)
    ]
    store.record([], rows)
    got = store.usage_rows(key_id="k1")
    assert [r.request_id for r in got] == ["r5", "r3", "r1"]
    assert store.usage_rows(peer_id="nope") == []
    assert len(store.usage_rows(since=day + 4)) == 2
    (summary,) = store.usage_summary(key_id="k1")
    assert summary == {
        "model": "m",
        "day": time.strftime("%Y-%m-%d", time.gmtime(day)),
        "requests": 3,
        "prompt_tokens": 30,
        "completion_tokens": 9,
        "cost": 1.5,
        "failed": 1,
    }
