"""Moving averages of the node's measured performance, announced in heartbeats."""

from __future__ import annotations

__all__ = ["PerfTracker"]

DEFAULT_ALPHA = 0.2


class PerfTracker:
    """Exponential moving averages of time to first token and decode speed.

    Only successful streamed requests feed it: a non-streamed answer cannot separate prefill from
    decode, and a failed one measures the failure, not the node.
    """

    def __init__(self, alpha: float = DEFAULT_ALPHA) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must be in (0, 1]")
        self.alpha = alpha
        self.ttft_ms: float | None = None
        self.tokens_per_s: float | None = None
        self.requests = 0

    def _ema(self, old: float | None, sample: float) -> float:
        return sample if old is None else old + self.alpha * (sample - old)

    def record_ttft(self, ms: float) -> None:
        """Add one time-to-first-token sample in milliseconds."""
        if ms >= 0:
            self.ttft_ms = self._ema(self.ttft_ms, ms)

    def record_decode(self, tokens: int, seconds: float) -> None:
        """Add one decode-speed sample: ``tokens`` generated after the first in ``seconds``."""
        if tokens > 0 and seconds > 0:
            self.tokens_per_s = self._ema(self.tokens_per_s, tokens / seconds)

    def record_request(self) -> None:
        """Count one completed request."""
        self.requests += 1
