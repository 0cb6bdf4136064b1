"""Run llama.cpp's HTTP server in this process until SIGTERM or SIGINT.

``xllamacpp`` has no command-line binary: its ``Server`` runs llama.cpp's native server inside the
calling Python process. :class:`~tooti_backend_llamacpp.managed.ManagedLlamaServer` therefore runs
this module as a child process (``python -m tooti_backend_llamacpp._server ...``) so it can be
stopped, killed and restarted independently of the agent. Once the server listens, one line
``LISTENING <url>`` goes to stdout; everything else llama.cpp prints goes to stderr. With
``--watch-stdin`` the server also stops when stdin closes, i.e. when the parent process is gone.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main", "parse_args"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the wrapper's flags (kept in step with :meth:`ManagedLlamaServer.command`)."""
    ap = argparse.ArgumentParser(prog="python -m tooti_backend_llamacpp._server")
    ap.add_argument("--model", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--alias", default="")
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--embedding", action="store_true")
    ap.add_argument("--pooling", default="", choices=["", "none", "mean", "cls", "last", "rank"])
    ap.add_argument("--chat-template", default="")
    ap.add_argument("--api-key", default="")
    ap.add_argument("--watch-stdin", action="store_true", help="exit when stdin closes (the parent died)")
    return ap.parse_args(argv)


def _params(a: argparse.Namespace) -> Any:
    import xllamacpp

    p = xllamacpp.CommonParams()
    p.model.path = a.model
    p.hostnames = [a.host]
    p.port = a.port
    p.n_ctx = a.ctx  # total context; every slot gets n_ctx / n_parallel
    p.n_parallel = a.parallel
    p.cpuparams.n_threads = a.threads
    p.cpuparams_batch.n_threads = a.threads
    p.endpoint_metrics = True
    p.endpoint_props = True
    p.endpoint_slots = True
    p.embedding = a.embedding
    # Jinja chat templates (the GGUF's own, or --chat-template as Jinja source) are what make
    # llama.cpp render `tools` and parse `tool_calls` for models whose template supports tools;
    # set explicitly so a change of xllamacpp's default cannot silently switch tool calls off.
    p.use_jinja = True
    if a.pooling:
        p.pooling_type = getattr(xllamacpp.llama_pooling_type, f"LLAMA_POOLING_TYPE_{a.pooling.upper()}")
    if a.alias:
        p.model_alias = {a.alias}
    if a.chat_template:
        p.chat_template = a.chat_template
    if a.api_key:
        p.api_keys = [a.api_key]
    return p


def _wait_for_eof(stop: threading.Event) -> None:
    """Set ``stop`` when stdin reaches end of file: the parent closed it or died."""
    while sys.stdin.buffer.read(4096):
        pass
    stop.set()


def main(argv: Sequence[str] | None = None) -> int:
    """Start the server, announce its address, and block until asked to stop."""
    import xllamacpp

    args = parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.watch_stdin:
        threading.Thread(target=_wait_for_eof, args=(stop,), daemon=True).start()
    server = xllamacpp.Server(_params(args))  # returns once the model is loaded and the port listens
    sys.stdout.write(f"LISTENING {server.listening_address}\n")
    sys.stdout.flush()
    stop.wait()
    del server
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
