"""The accounting store: keys, reservations, rate windows, usage rows and node standings, on SQLite or PostgreSQL.

One implementation serves both databases through SQLAlchemy Core; the only dialect-specific pieces
are the upsert of a rate window and the day bucket of the usage summary. Every method is synchronous
and thread-safe (one pooled connection per call): the gateway calls it from worker threads.

Budget correctness rests on one conditional ``UPDATE``: a request is admitted only while
``spent + reserved < budget``, and admitting it adds its reservation in the same statement. Row
locking makes that atomic across connections and across gateways sharing one PostgreSQL, so the spend
can exceed a budget by at most the reservation of the last request admitted (and by a request whose
actual usage exceeded its reservation, which is charged in full rather than hidden).
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

import msgspec
from sqlalchemy import Integer, and_, case, cast, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tooti.accounting.engine import open_engine, redact_url
from tooti.accounting.migrate import upgrade
from tooti.accounting.records import BudgetKind, KeyRecord, Settlement, UsageRow
from tooti.accounting.schema import api_keys, node_audits, node_standings, rate_windows, reservations, usage
from tooti.api_key_format import HASH_PREFIX, KEY_PREFIX
from tooti.api_key_format import generate_key as generate_api_key
from tooti.api_key_format import hash_key as hash_api_key

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from sqlalchemy.engine import Connection, Engine, Row

__all__ = [
    "AccountingStore",
    "KeyNotFound",
    "QuotaExceeded",
    "RateLimited",
    "generate_api_key",
    "hash_api_key",
]

_SHOWN_PREFIX = 10
_DAY_S = 86400
_MINUTE_S = 60
_STANDING_FIELDS = (
    "state",
    "kind",
    "reason",
    "since",
    "quarantined_until",
    "checks",
    "failures",
    "corroborated",
    "corroborated_in_row",
    "reputation_good",
    "reputation_bad",
    "updated_at",
    "updated_by",
)
"""The columns a newer standing row replaces (all but the key)."""


class KeyNotFound(LookupError):
    """No key matches the id, key or hash given."""


class QuotaExceeded(Exception):
    """The key's budget is spent (or fully reserved by requests in flight)."""


class RateLimited(Exception):
    """The key's requests or tokens per minute are used up in this minute."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def _key_record(row: Row[Any]) -> KeyRecord:
    m = row._mapping
    models = tuple(x for x in (m["models"] or "").split(",") if x)
    return KeyRecord(
        id=m["id"],
        name=m["name"],
        key_hash=m["key_hash"],
        prefix=m["prefix"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        revoked_at=m["revoked_at"],
        expires_at=m["expires_at"],
        budget_kind=m["budget_kind"],
        budget=m["budget"],
        spent=m["spent"] or 0.0,
        reserved=m["reserved"] or 0.0,
        rpm=m["rpm"],
        tpm=m["tpm"],
        models=models,
        last_used_at=m["last_used_at"],
    )


def _usage_row(row: Row[Any]) -> UsageRow:
    m = row._mapping
    return UsageRow(**{f: m[f] for f in UsageRow.__struct_fields__})


class AccountingStore:
    """Keys, budgets, limits and usage in one database.

    Args:
        engine: from :func:`tooti.accounting.engine.open_engine`; :meth:`open` also migrates.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    @classmethod
    def open(cls, url: str | None = None, *, migrate: bool = True) -> AccountingStore:
        """Open the store at ``url`` (default: SQLite in the data dir) and bring its schema up to date."""
        engine = open_engine(url)
        if migrate:
            upgrade(engine)
        return cls(engine)

    @property
    def url(self) -> str:
        """The database URL without its password."""
        return redact_url(self.engine.url.render_as_string(hide_password=False))

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    # ---- keys -------------------------------------------------------------------------------

    def create_key(
        self,
        *,
        name: str | None = None,
        budget: float | None = None,
        budget_kind: BudgetKind | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        models: Sequence[str] = (),
        expires_at: float | None = None,
    ) -> tuple[str, KeyRecord]:
        """Create a key; return the key itself (shown once, never stored) and its record."""
        if (budget is None) != (budget_kind is None):
            raise ValueError("a budget needs its kind (money or tokens) and the kind needs a budget")
        key = generate_api_key()
        now = time.time()
        values = {
            "id": "key_" + uuid.uuid4().hex[:16],
            "name": name,
            "key_hash": hash_api_key(key),
            "prefix": key[:_SHOWN_PREFIX],
            "created_at": now,
            "updated_at": now,
            "expires_at": expires_at,
            "budget_kind": budget_kind,
            "budget": budget,
            "spent": 0.0,
            "reserved": 0.0,
            "rpm": rpm,
            "tpm": tpm,
            "models": ",".join(models) or None,
        }
        with self.engine.begin() as conn:
            conn.execute(insert(api_keys).values(**values))
            row = conn.execute(select(api_keys).where(api_keys.c.id == values["id"])).one()
        return key, _key_record(row)

    def _where_key(self, key_or_id: str) -> Any:
        if key_or_id.startswith(KEY_PREFIX):
            return api_keys.c.key_hash == hash_api_key(key_or_id)
        if key_or_id.startswith(HASH_PREFIX):
            return api_keys.c.key_hash == key_or_id
        return api_keys.c.id == key_or_id

    def find_key(self, key_or_id: str) -> KeyRecord:
        """The key with this id, this key value, or this ``sha256:`` hash.

        Raises:
            KeyNotFound: none matches.
        """
        with self.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(self._where_key(key_or_id))).first()
        if row is None:
            raise KeyNotFound(key_or_id if not key_or_id.startswith(KEY_PREFIX) else key_or_id[:_SHOWN_PREFIX] + "…")
        return _key_record(row)

    def list_keys(self) -> list[KeyRecord]:
        """Every key, oldest first (revoked ones included)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)).all()
        return [_key_record(r) for r in rows]

    def revoke_key(self, key_or_id: str) -> KeyRecord:
        """Revoke a key (idempotent); running gateways refuse it from their next key refresh."""
        record = self.find_key(key_or_id)
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(
                update(api_keys)
                .where(api_keys.c.id == record.id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now, updated_at=now)
            )
        return self.find_key(record.id)

    def rotate_key(self, key_or_id: str) -> tuple[str, KeyRecord]:
        """Give a key a new secret, keeping its id, budget, spend and limits; the old secret stops working."""
        record = self.find_key(key_or_id)
        if record.revoked_at is not None:
            raise ValueError(f"key {record.id} is revoked; create a new one instead")
        key = generate_api_key()
        with self.engine.begin() as conn:
            conn.execute(
                update(api_keys)
                .where(api_keys.c.id == record.id)
                .values(key_hash=hash_api_key(key), prefix=key[:_SHOWN_PREFIX], updated_at=time.time())
            )
        return key, self.find_key(record.id)

    def keys_version(self) -> tuple[int, float, float]:
        """A cheap fingerprint of the key table (count, newest and summed change times) for gateways to poll.

        The sum changes whenever any key changes, even when the machine that changed it has a clock
        behind the newest ``updated_at``. Spend and last-use updates do not touch ``updated_at``, so
        serving requests does not make every gateway reload its keys.
        """
        with self.engine.connect() as conn:
            count, newest, total = conn.execute(
                select(func.count(), func.max(api_keys.c.updated_at), func.sum(api_keys.c.updated_at))
            ).one()
        return int(count), float(newest or 0.0), float(total or 0.0)

    def usable_keys(self) -> dict[str, KeyRecord]:
        """Keys that are not revoked, by hash (expiry is checked per request against the clock)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_keys).where(api_keys.c.revoked_at.is_(None))).all()
        return {r.key_hash: _key_record(r) for r in rows}

    # ---- admission and settlement -----------------------------------------------------------

    def _take_rate(self, conn: Connection, key: KeyRecord, now: float) -> None:
        minute = int(now // _MINUTE_S)
        ins = (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(rate_windows)
        conds = []
        if key.rpm is not None:
            conds.append(rate_windows.c.requests < key.rpm)
        if key.tpm is not None:
            conds.append(rate_windows.c.tokens < key.tpm)
        stmt = (
            ins.values(key_id=key.id, minute=minute, requests=1, tokens=0)
            .on_conflict_do_update(
                index_elements=[rate_windows.c.key_id, rate_windows.c.minute],
                set_={"requests": rate_windows.c.requests + 1},
                where=and_(*conds),
            )
            .returning(rate_windows.c.requests)
        )
        if conn.execute(stmt).first() is None:
            limit = f"{key.rpm} requests" if key.rpm is not None else f"{key.tpm} tokens"
            raise RateLimited(f"rate limit of {limit} per minute exceeded for this key", _MINUTE_S - now % _MINUTE_S)

    def admit(self, key: KeyRecord, amount: float, now: float | None = None) -> str | None:
        """Take one request from the key's rate window and reserve ``amount`` of its budget.

        Returns the reservation id (``None`` when the key has no budget). Both happen in one
        transaction, so a refused reservation gives the rate window its request back.

        Raises:
            RateLimited: the key's rpm or tpm is used up this minute.
            QuotaExceeded: the key's budget is spent or fully reserved, or the key was revoked.
        """
        now = time.time() if now is None else now
        with self.engine.begin() as conn:
            if key.rpm is not None or key.tpm is not None:
                self._take_rate(conn, key, now)
            if key.budget is None:
                return None
            taken = conn.execute(
                update(api_keys)
                .where(
                    api_keys.c.id == key.id,
                    api_keys.c.revoked_at.is_(None),
                    api_keys.c.budget.is_not(None),
                    api_keys.c.spent + api_keys.c.reserved < api_keys.c.budget,
                )
                .values(reserved=api_keys.c.reserved + amount)
            )
            if taken.rowcount != 1:
                raise QuotaExceeded(f"the budget of key {key.id} is used up")
            reservation = uuid.uuid4().hex
            conn.execute(insert(reservations).values(id=reservation, key_id=key.id, amount=amount, created_at=now))
        return reservation

    def release(self, reservation_id: str) -> bool:
        """Give a reservation back unspent (the request failed before any usage). Idempotent."""
        with self.engine.begin() as conn:
            return self._close_reservation(conn, reservation_id)

    @staticmethod
    def _close_reservation(conn: Connection, reservation_id: str) -> bool:
        """Delete the reservation and subtract it from its key, once: whoever deletes the row does it."""
        row = conn.execute(
            delete(reservations)
            .where(reservations.c.id == reservation_id)
            .returning(reservations.c.key_id, reservations.c.amount)
        ).first()
        if row is None:
            return False
        conn.execute(
            update(api_keys)
            .where(api_keys.c.id == row.key_id)
            .values(reserved=case((api_keys.c.reserved > row.amount, api_keys.c.reserved - row.amount), else_=0.0))
        )
        return True

    def record(self, settlements: Iterable[Settlement], rows: Iterable[UsageRow]) -> None:
        """Apply finished requests to their keys and write their usage rows, in one transaction."""
        settlements = list(settlements)
        rows = list(rows)
        if not settlements and not rows:
            return
        upsert = (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(rate_windows)
        with self.engine.begin() as conn:
            for s in settlements:
                if s.reservation_id is not None:
                    self._close_reservation(conn, s.reservation_id)
                conn.execute(
                    update(api_keys)
                    .where(api_keys.c.id == s.key_id)
                    .values(spent=api_keys.c.spent + s.spent, last_used_at=s.at)
                )
                if s.count_tokens and s.tokens:
                    conn.execute(
                        upsert.values(
                            key_id=s.key_id, minute=int(s.at // _MINUTE_S), requests=0, tokens=s.tokens
                        ).on_conflict_do_update(
                            index_elements=[rate_windows.c.key_id, rate_windows.c.minute],
                            set_={"tokens": rate_windows.c.tokens + s.tokens},
                        )
                    )
            if rows:
                conn.execute(insert(usage), [msgspec.structs.asdict(r) for r in rows])

    def release_stale(self, older_than_s: float, now: float | None = None) -> int:
        """Release reservations older than ``older_than_s`` (left by a gateway that died mid-request)."""
        cutoff = (time.time() if now is None else now) - older_than_s
        with self.engine.connect() as conn:
            ids = conn.execute(select(reservations.c.id).where(reservations.c.created_at < cutoff)).scalars().all()
        released = 0
        for rid in ids:
            released += self.release(rid)
        with self.engine.begin() as conn:
            conn.execute(delete(rate_windows).where(rate_windows.c.minute < int(cutoff // _MINUTE_S) - 1))
        return released

    # ---- reading usage ----------------------------------------------------------------------

    def usage_rows(
        self,
        *,
        key_id: str | None = None,
        peer_id: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[UsageRow]:
        """Usage rows, newest first, filtered by key, node and time."""
        stmt = select(usage)
        if key_id is not None:
            stmt = stmt.where(usage.c.key_id == key_id)
        if peer_id is not None:
            stmt = stmt.where(usage.c.peer_id == peer_id)
        if since is not None:
            stmt = stmt.where(usage.c.at >= since)
        stmt = stmt.order_by(usage.c.at.desc(), usage.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_usage_row(r) for r in conn.execute(stmt).all()]

    def receipts(self, *, peer_id: str, since: float | None = None) -> list[str]:
        """The stored countersigned receipts of requests ``peer_id`` served, oldest first."""
        stmt = select(usage.c.receipt).where(usage.c.peer_id == peer_id, usage.c.receipt.is_not(None))
        if since is not None:
            stmt = stmt.where(usage.c.at >= since)
        with self.engine.connect() as conn:
            return [str(r) for r in conn.execute(stmt.order_by(usage.c.at, usage.c.id)).scalars()]

    def usage_summary(
        self, *, key_id: str | None = None, peer_id: str | None = None, since: float | None = None
    ) -> list[dict[str, Any]]:
        """Totals per model and UTC day: requests, tokens in/out, cost, failed requests."""
        day_expr = (
            func.floor(usage.c.at / _DAY_S) if self.dialect == "postgresql" else cast(usage.c.at / _DAY_S, Integer)
        )
        day = day_expr.label("day")
        stmt = select(
            usage.c.model,
            day,
            func.count().label("requests"),
            func.coalesce(func.sum(usage.c.prompt_tokens), 0).label("prompt_tokens"),
            func.coalesce(func.sum(usage.c.completion_tokens), 0).label("completion_tokens"),
            func.coalesce(func.sum(usage.c.cost), 0.0).label("cost"),
            func.sum(case((usage.c.status != "ok", 1), else_=0)).label("failed"),
        )
        conds = []
        if key_id is not None:
            conds.append(usage.c.key_id == key_id)
        if peer_id is not None:
            conds.append(usage.c.peer_id == peer_id)
        if since is not None:
            conds.append(usage.c.at >= since)
        if conds:
            stmt = stmt.where(and_(*conds))
        stmt = stmt.group_by(usage.c.model, day).order_by(day.desc(), usage.c.model)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [
            {
                "model": r.model,
                "day": time.strftime("%Y-%m-%d", time.gmtime(int(r.day) * _DAY_S)),
                "requests": int(r.requests),
                "prompt_tokens": int(r.prompt_tokens),
                "completion_tokens": int(r.completion_tokens),
                "cost": float(r.cost),
                "failed": int(r.failed or 0),
            }
            for r in rows
        ]

    # ---- node standings and check verdicts (tooti.trust.standing_ledger) ----------------------

    def save_standings(self, standings: Sequence[dict[str, Any]], audits: Sequence[dict[str, Any]] = ()) -> None:
        """Write node standings (one row per node; the newest ``updated_at`` wins) and verdicts, in one transaction.

        A row is replaced only by a newer one, so two gateways writing at once converge on the
        later verdict whatever order their transactions commit in.
        """
        if not standings and not audits:
            return
        ins = (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(node_standings)
        with self.engine.begin() as conn:
            for row in standings:
                stmt = ins.values(**row).on_conflict_do_update(
                    index_elements=[node_standings.c.peer_id],
                    set_={f: ins.excluded[f] for f in _STANDING_FIELDS},
                    where=node_standings.c.updated_at <= ins.excluded.updated_at,
                )
                conn.execute(stmt)
            if audits:
                conn.execute(insert(node_audits), list(audits))

    def standings(self, *, updated_since: float | None = None) -> list[dict[str, Any]]:
        """Node standing rows, oldest change first; only those changed at or after ``updated_since`` when given."""
        stmt = select(node_standings)
        if updated_since is not None:
            stmt = stmt.where(node_standings.c.updated_at >= updated_since)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt.order_by(node_standings.c.updated_at, node_standings.c.peer_id)).all()
        return [dict(r._mapping) for r in rows]

    def audits(self, *, peer_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Check verdicts, newest first (of one node when ``peer_id`` is given)."""
        stmt = select(node_audits)
        if peer_id is not None:
            stmt = stmt.where(node_audits.c.peer_id == peer_id)
        stmt = stmt.order_by(node_audits.c.at.desc(), node_audits.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt).all()]

    def prune_audits(self, older_than_s: float, now: float | None = None) -> int:
        """Delete verdicts older than ``older_than_s``; returns how many."""
        cutoff = (time.time() if now is None else now) - older_than_s
        with self.engine.begin() as conn:
            return int(conn.execute(delete(node_audits).where(node_audits.c.at < cutoff)).rowcount or 0)
