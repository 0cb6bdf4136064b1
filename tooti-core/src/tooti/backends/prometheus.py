"""Read Prometheus text exposition (``/metrics``) with prometheus-client's own parser."""

from __future__ import annotations

import math

from prometheus_client.parser import text_string_to_metric_families

from tooti.errors import MalformedResponse

__all__ = ["parse_samples"]


def parse_samples(text: str) -> dict[str, float]:
    """Sum every sample by name over its label sets (e.g. all engines of one vLLM server).

    Returns:
        ``{sample_name: value}``; counters keep their ``_total`` suffix, NaN samples are skipped.

    Raises:
        MalformedResponse: the text is not valid exposition format.
    """
    totals: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if not math.isnan(sample.value):
                    totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    except (ValueError, TypeError, IndexError) as exc:
        raise MalformedResponse(f"metrics are not valid Prometheus text: {exc}") from None
    return totals
