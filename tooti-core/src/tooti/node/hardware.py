"""A cheap summary of the node's machine for heartbeats (no subprocesses, no GPU probing)."""

from __future__ import annotations

import os
import platform

from tooti.p2p.heartbeat import Hardware

__all__ = ["detect_hardware"]


def _mem_mb() -> int | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return int(pages * size // (1024 * 1024)) if pages > 0 and size > 0 else None


def detect_hardware() -> Hardware:
    """CPU count, total memory, machine architecture and OS."""
    return Hardware(cpus=os.cpu_count() or 0, mem_mb=_mem_mb(), arch=platform.machine(), os=platform.system().lower())
