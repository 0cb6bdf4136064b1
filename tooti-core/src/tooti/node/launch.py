"""Building the configured backend and running a node process until SIGINT/SIGTERM (trio).

Used by ``tooti node start``; importable so other launchers can run a node from a config.
"""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING

import trio

from tooti.config import backend_plugin_config, backend_settings
from tooti.node.agent import NodeStarted, run_node

if TYPE_CHECKING:
    from collections.abc import Callable

    from tooti.backends.protocol import InferenceBackend
    from tooti.config.model import Config
    from tooti.plugins.host import PluginHost

__all__ = ["build_backend", "run_config", "serve_until_signal"]

log = logging.getLogger(__name__)

BACKEND_CLOSE_TIMEOUT = 15.0


def build_backend(config: Config, host: PluginHost | None = None, *, source: str = "config") -> InferenceBackend:
    """Instantiate the plugin named by ``backend.type`` with its validated section (no I/O)."""
    from tooti.plugins import PluginHost

    plugins = host if host is not None else PluginHost()
    plugin_config = backend_plugin_config(config, plugins, source=source)
    cls = plugins.backend_class(config.backend.type)
    return cls.from_config(backend_settings(config), plugin_config)


async def serve_until_signal(
    config: Config, backend: InferenceBackend, on_started: Callable[[NodeStarted], None] | None = None
) -> None:
    """Start the backend, serve the node until SIGINT or SIGTERM, then close everything cleanly."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            await backend.start()
            async with trio.open_nursery() as nursery:
                started: NodeStarted = await nursery.start(run_node, config, backend)
                if on_started is not None:
                    on_started(started)
                async for signum in signals:
                    log.info("received %s; shutting down", signal.Signals(signum).name)
                    break
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(BACKEND_CLOSE_TIMEOUT):
                await backend.aclose()


async def run_config(config: Config, on_started: Callable[[NodeStarted], None] | None = None) -> None:
    """A whole node from a config alone: build the backend plugin and serve until SIGINT/SIGTERM.

    ``trio.run(run_config, config)`` is what ``tooti node start`` does after loading the file.
    """
    await serve_until_signal(config, build_backend(config), on_started)
