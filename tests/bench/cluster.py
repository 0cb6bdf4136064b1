"""Real processes for benchmarks: upstreams, gateways and nodes started through tooti's own CLI.

Everything listens on 127.0.0.1 and is stopped by pid in :meth:`Cluster.close`; each process's log
goes to the cluster's work directory so a failed run can be diagnosed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tooti.testing import eventually

HERE = Path(__file__).parent


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout_s: float = 60.0, ok: tuple[int, ...] = (200,)) -> None:
    """Poll ``url`` until it answers one of ``ok`` statuses."""
    try:
        eventually(
            lambda: httpx.get(url, timeout=2.0).status_code in ok,
            timeout=timeout_s,
            interval=0.1,
            ignoring=(httpx.HTTPError,),
        )
    except AssertionError as exc:
        raise TimeoutError(f"{url} did not answer {ok} within {timeout_s} s") from exc


@dataclass
class Proc:
    """One child process and its log."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the process has used so far."""
        import psutil

        times = psutil.Process(self.popen.pid).cpu_times()
        return float(times.user + times.system)

    def alive(self) -> bool:
        """Whether it still runs."""
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.alive():
            self.popen.kill()
            self.popen.wait(10)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Gateway:
    """A ``tooti gateway start`` process."""

    proc: Proc
    base_url: str
    peer_id: str
    p2p_addr: str


@dataclass
class Node:
    """A ``tooti node start`` process."""

    proc: Proc
    peer_id: str
    config: Path


class Cluster:
    """Starts and stops benchmark processes in one work directory."""

    def __init__(self, workdir: Path, *, heartbeat_s: float = 1.0) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.heartbeat_s = heartbeat_s
        self.procs: list[Proc] = []
        self._serial = 0

    def _spawn(self, name: str, cmd: list[str], *, cpus: str | None = None) -> Proc:
        log = self.workdir / f"{name}.log"
        if cpus is not None:
            cmd = ["taskset", "-c", cpus, *cmd]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with log.open("wb") as out:
            popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env)
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def _write(self, name: str, config: dict[str, Any]) -> Path:
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    @staticmethod
    def _identity(key_file: Path) -> str:
        """Create the key file a process will use and return its peer id (in process: no CLI start-up cost)."""
        from tooti.p2p.identity import load_or_create_identity, peer_id_of

        return peer_id_of(load_or_create_identity(key_file))

    def upstream(self, *, chunks: int = 32, chunk_delay: float = 0.0, cpus: str | None = None) -> str:
        """Start the fast OpenAI-compatible upstream; return its base URL."""
        port = free_port()
        cmd = [sys.executable, str(HERE / "fast_upstream.py"), "--port", str(port), "--chunks", str(chunks)]
        self._spawn(f"upstream-{port}", [*cmd, "--chunk-delay", str(chunk_delay)], cpus=cpus)
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health")
        return url

    def gateway(
        self,
        *,
        bootstrap: list[str] | None = None,
        cpus: str | None = None,
        routing: dict[str, Any] | None = None,
        **gateway: Any,
    ) -> Gateway:
        """Start a gateway with a stable identity; return it once /health answers.

        ``routing`` adds settings to the config's ``routing`` section (e.g. ``affinity``).
        """
        self._serial += 1
        name = f"gateway-{self._serial}"
        p2p_port, http_port = free_port(), free_port()
        key = self.workdir / f"{name}.key"
        config = self._write(
            name,
            {
                "node": {"name": name, "identity_key_file": str(key)},
                "listen": {"host": "127.0.0.1", "tcp_port": p2p_port},
                "network": {"bootstrap_peers": bootstrap or []},
                "heartbeat": {"interval_sec": self.heartbeat_s},
                # fast_upstream answers every prompt alike, which canaries rightly quarantine as a fixed
                # reply; benchmarks measure tooti's own cost, so verification is off unless asked for.
                "gateway": {
                    "listen": f"127.0.0.1:{http_port}",
                    "verification": {"enabled": False},
                    # The product's default store (SQLite), kept in the workdir, not the user's $TOOTI_HOME.
                    "store": {"url": f"sqlite:///{self.workdir / name}.db"},
                    **gateway,
                },
                "routing": {"cooldown_sec": 30.0, **(routing or {})},
            },
        )
        peer_id = self._identity(key)
        cmd = [sys.executable, "-m", "tooti", "gateway", "start", "-f", str(config), "--identity", str(key)]
        proc = self._spawn(name, [*cmd, "--log-level", "warning"], cpus=cpus)
        base_url = f"http://127.0.0.1:{http_port}"
        wait_http(f"{base_url}/health", timeout_s=60)
        return Gateway(proc, base_url, peer_id, f"/ip4/127.0.0.1/tcp/{p2p_port}/p2p/{peer_id}")

    def node(
        self,
        backend: str,
        base_url: str,
        bootstrap: list[str],
        *,
        cpus: str | None = None,
        tcp_port: int = 0,
        **node: Any,
    ) -> Node:
        """Start a node fronting ``base_url`` with the ``backend`` plugin (``vllm`` or ``llamacpp``).

        ``node`` adds settings to the config's ``node`` section (e.g. ``write_window_ms``).
        """
        self._serial += 1
        name = f"node-{self._serial}"
        key = self.workdir / f"{name}.key"
        config = self._write(
            name,
            {
                "node": {"name": name, "identity_key_file": str(key), **node},
                "listen": {"host": "127.0.0.1", "tcp_port": tcp_port},
                "network": {"bootstrap_peers": bootstrap},
                "backend": {"type": backend, "base_url": base_url},
                "heartbeat": {"interval_sec": self.heartbeat_s},
            },
        )
        peer_id = self._identity(key)
        proc = self._spawn(name, [sys.executable, "-m", "tooti", "node", "start", "-f", str(config)], cpus=cpus)
        return Node(proc, peer_id, config)

    def close(self) -> None:
        """Stop every process this cluster started (nodes first, by pid)."""
        for proc in reversed(self.procs):
            proc.stop()


def network_nodes(gateway: Gateway) -> list[dict[str, Any]]:
    """The gateway's registry view."""
    data: list[dict[str, Any]] = httpx.get(f"{gateway.base_url}/v1/network/nodes", timeout=5).json()["data"]
    return data


def wait_nodes(gateway: Gateway, peer_ids: set[str], timeout_s: float = 60.0) -> float:
    """Wait until the gateway lists every peer in ``peer_ids``; return the seconds it took."""
    t0 = time.monotonic()
    seen: set[str] = set()

    def all_seen() -> bool:
        seen.clear()
        seen.update(n["peer_id"] for n in network_nodes(gateway))
        return peer_ids <= seen

    try:
        eventually(all_seen, timeout=timeout_s, interval=0.05, ignoring=(httpx.HTTPError,))
    except AssertionError as exc:
        raise TimeoutError(f"{len(peer_ids - seen)} of {len(peer_ids)} nodes not seen by {gateway.base_url}") from exc
    return time.monotonic() - t0
