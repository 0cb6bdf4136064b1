"""Separate hosts on one Linux machine: network namespaces joined by veth links, NAT by nftables.

:class:`Lab` builds a small internet for one test run and tears it down again, also after a
failure: every namespace, veth and nft table it made carries the run's random id, and deleting a
namespace deletes the veths and nft tables inside it. Nothing outside those namespaces is touched;
only addresses of namespaces the run created are used.

- a public segment: a bridge in a *switch* namespace, each public host attached by a veth
  (``203.0.113.0/24``, documentation addresses that exist only inside these namespaces);
- a home segment behind a *router* namespace that masquerades (nftables) the home network
  (``192.168.77.0/24``) onto its public address and forwards nothing inbound that the home side did
  not start: a host there can connect out but cannot be dialled.

Processes run inside a host with ``ip netns exec``; :meth:`Lab.spawn` remembers them by pid so
:meth:`Lab.kill_host` and teardown stop exactly those. The test process reaches a host's TCP
service through a Unix socket forwarder started inside that host (:meth:`Lab.unix_forward`), since
the test itself stays in the machine's own namespace.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tooti.testing import eventually

__all__ = ["Host", "Lab", "LabUnavailable", "lab_unavailable_reason"]

PUBLIC_NET = "203.0.113"
HOME_NET = "192.168.77"
_HERE = Path(__file__).resolve().parent


class LabUnavailable(RuntimeError):
    """Namespaces cannot be built here; the message says why."""


def lab_unavailable_reason() -> str | None:
    """Why this machine cannot run the lab (not root, no ``ip`` or ``nft``), or ``None``."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (Debian package {package}; .ci/run installs it)"
    probe = f"ttprobe{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def _run(*cmd: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    full = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
    result = subprocess.run(full, capture_output=True, text=True, check=False, timeout=30)
    if check and result.returncode != 0:
        raise LabUnavailable(f"{' '.join(full)} failed: {result.stderr.strip()}")
    return result


@dataclass
class Host:
    """One namespace: its name in the lab, namespace name, address and uplink (veth inside it)."""

    name: str
    ns: str
    ip: str
    link: str
    pids: list[int] = field(default_factory=list)


class Lab:
    """One run's namespaces. Use as a context manager; :meth:`close` removes everything."""

    def __init__(self, workdir: Path) -> None:
        self.id = secrets.token_hex(3)
        self.workdir = workdir
        self.hosts: dict[str, Host] = {}
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self._links = 0
        self.switch = self._namespace("sw")
        _run("ip", "link", "add", "br0", "type", "bridge", ns=self.switch)
        _run("ip", "link", "set", "br0", "up", ns=self.switch)

    # -- building -----------------------------------------------------------------------------

    def _namespace(self, role: str) -> str:
        ns = f"tt{self.id}-{role}"
        _run("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        _run("ip", "link", "set", "lo", "up", ns=ns)
        return ns

    def _veth(self, ns_a: str, ns_b: str) -> tuple[str, str]:
        """A veth pair with one end in each namespace; names carry the run id (≤ 15 characters)."""
        self._links += 1
        a, b = f"t{self.id}{self._links:02d}a", f"t{self.id}{self._links:02d}b"
        _run("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        _run("ip", "link", "set", a, "netns", ns_a)
        _run("ip", "link", "set", b, "netns", ns_b)
        return a, b

    def public_host(self, name: str, last_octet: int) -> Host:
        """A host on the public segment at ``203.0.113.<last_octet>``."""
        ns = self._namespace(name)
        inside, port = self._veth(ns, self.switch)
        _run("ip", "link", "set", port, "master", "br0", "up", ns=self.switch)
        ip = f"{PUBLIC_NET}.{last_octet}"
        _run("ip", "addr", "add", f"{ip}/24", "dev", inside, ns=ns)
        _run("ip", "link", "set", inside, "up", ns=ns)
        host = Host(name, ns, ip, inside)
        self.hosts[name] = host
        return host

    def home_host(self, name: str, router_octet: int) -> Host:
        """A host at ``192.168.77.2`` behind a masquerading router at ``203.0.113.<router_octet>``."""
        router = self.public_host(f"{name}-rtr", router_octet)
        ns = self._namespace(name)
        lan_home, lan_router = self._veth(ns, router.ns)
        _run("ip", "addr", "add", f"{HOME_NET}.1/24", "dev", lan_router, ns=router.ns)
        _run("ip", "link", "set", lan_router, "up", ns=router.ns)
        _run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1", ns=router.ns)
        ruleset = f"""
table ip tooti_nat_{self.id} {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {HOME_NET}.0/24 oifname "{router.link}" masquerade
    }}
    chain forward {{
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "{lan_router}" accept
    }}
}}
"""
        rules = self.workdir / f"nat-{self.id}.nft"
        rules.write_text(ruleset)
        _run("nft", "-f", str(rules), ns=router.ns)
        ip = f"{HOME_NET}.2"
        _run("ip", "addr", "add", f"{ip}/24", "dev", lan_home, ns=ns)
        _run("ip", "link", "set", lan_home, "up", ns=ns)
        _run("ip", "route", "add", "default", "via", f"{HOME_NET}.1", ns=ns)
        host = Host(name, ns, ip, lan_home)
        self.hosts[name] = host
        return host

    # -- processes ------------------------------------------------------------------------------

    def spawn(
        self, host: str, args: list[str], log_name: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``args`` inside ``host`` (``ip netns exec`` keeps the pid); output goes to a log file."""
        target = self.hosts[host]
        log = (self.workdir / f"{log_name}.log").open("wb")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", target.ns, *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        log.close()
        target.pids.append(proc.pid)
        self.procs.append(proc)
        return proc

    def unix_forward(self, host: str, port: int) -> Path:
        """A Unix socket in the workdir that forwards to ``127.0.0.1:<port>`` inside ``host``."""
        path = self.workdir / f"{host}-{port}.sock"
        self.spawn(host, [sys.executable, str(_HERE / "uds_forward.py"), str(path), str(port)], f"fwd-{host}-{port}")
        try:
            eventually(path.exists, timeout=30)
        except AssertionError as exc:
            raise LabUnavailable(f"forwarder for {host}:{port} did not start") from exc
        return path

    def log(self, name: str) -> str:
        """A process log's text (for assertion messages)."""
        try:
            return (self.workdir / f"{name}.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    # -- faults ---------------------------------------------------------------------------------

    def cut(self, host: str) -> None:
        """Take the host's only link down: its TCP connections go silent, nothing is reset."""
        target = self.hosts[host]
        _run("ip", "link", "set", target.link, "down", ns=target.ns)

    def mend(self, host: str) -> None:
        """Bring the host's link back up."""
        target = self.hosts[host]
        _run("ip", "link", "set", target.link, "up", ns=target.ns)
        if target.ip.startswith(HOME_NET):
            _run("ip", "route", "replace", "default", "via", f"{HOME_NET}.1", ns=target.ns)

    def kill_host(self, host: str) -> None:
        """SIGKILL every process this lab started in ``host`` (a power cut, as peers see it)."""
        for pid in self.hosts[host].pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue

    # -- teardown -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop this lab's processes (by pid) and delete its namespaces (their veths and nft tables go too)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for ns in reversed(self.namespaces):
            _run("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
