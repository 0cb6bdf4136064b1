"""The built-in strategy used when no routing plugin is installed: fewest requests, then fastest."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from tooti.plugin_markers import hookimpl
from tooti.routing.load import outstanding
from tooti.routing.protocol import Candidate, Decision, Preferences, RoutingStrategy

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["SimpleStrategy"]


_EXPLAIN = 10
"""Reason lines per decision: the gateway tries at most 10 nodes."""


def _key(c: Candidate) -> tuple[int, int, float]:
    return (outstanding(c), c.recent_failures, c.ttft_ms if c.ttft_ms is not None else float("inf"))


class SimpleStrategy:
    """Order by in-flight plus queued requests, then recent failures, then TTFT. Deterministic."""

    name: ClassVar[str] = "simple"

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> SimpleStrategy:
        """Build the strategy; it takes no parameters."""
        if params:
            raise ValueError(f"strategy 'simple' takes no parameters, got: {', '.join(sorted(params))}")
        return cls()

    def rank(self, candidates: Sequence[Candidate], prefs: Preferences) -> Decision:
        """Return the candidates (all eligible: the gateway filtered them), least busy first."""
        ordered = sorted(candidates, key=_key)
        reasons = tuple(f"{c.peer_id}: load {outstanding(c)}, ttft {c.ttft_ms} ms" for c in ordered[:_EXPLAIN])
        return Decision(ordered=tuple(ordered), strategy=self.name, reasons=reasons)


@hookimpl
def tooti_register_routers() -> list[type[RoutingStrategy]]:
    """Register the built-in strategy."""
    return [SimpleStrategy]
