"""The config file's schema. Key names follow the original ``node.yaml`` where the concept is the same.

Every section forbids unknown keys, so a misspelling is an error that names the key instead of a
setting silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

__all__ = [
    "AdmissionSection",
    "AffinitySection",
    "BackendSection",
    "Config",
    "GatewaySection",
    "HeartbeatSection",
    "ListenSection",
    "MetricsSection",
    "ModelPrice",
    "ModelsSection",
    "NetworkSection",
    "NodeSection",
    "RoutingSection",
    "StoreSection",
    "TimeoutsSection",
    "VerificationSection",
]

Port = Annotated[int, Meta(ge=0, le=65535, description="TCP port; 0 picks a free one")]
Seconds = Annotated[float, Meta(gt=0)]
_MULTIADDR_PREFIXES = ("/ip4/", "/ip6/", "/dns/", "/dns4/", "/dns6/", "/dnsaddr/")


def _check_host_port(value: str, key: str) -> None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{key} must be HOST:PORT, got {value!r}")


class _Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class AdmissionSection(_Section):
    """Which peers this process deals with (``gateway.admission``: nodes; ``node.admission``: gateways).

    ``open``: anyone (on a gateway, verification and reputation decide who gets traffic);
    ``allowlist``: only the peer ids in ``allow``; ``membership``: only peers presenting a
    certificate signed by one of ``authorities`` (see docs/security.md).
    """

    mode: Literal["open", "allowlist", "membership"] = "open"
    allow: list[str] = msgspec.field(default_factory=list)
    """Peer ids admitted in ``allowlist`` mode (and, in ``membership`` mode, admitted without a certificate)."""
    authorities: list[str] = msgspec.field(default_factory=list)
    """Authority public keys (``ed25519:…``, printed by ``tooti authority create``) for ``membership`` mode."""
    revocation_file: str | None = None
    """Revoked certificate serials or peer ids, one per line; re-read when it changes."""
    certificate_file: str | None = None
    """This peer's own membership certificate (``tooti authority issue``), shown to peers that require one."""

    def check(self, key: str) -> None:
        """Validate; ``key`` is the section's path for error messages (``gateway.admission``)."""
        if self.mode == "allowlist" and not self.allow:
            raise ValueError(f"{key}.allow is empty while {key}.mode is allowlist: no peer would be admitted")
        if self.mode == "membership" and not self.authorities:
            raise ValueError(f"{key}.authorities is empty while {key}.mode is membership")
        for text in self.authorities:
            if not text.startswith("ed25519:") or len(text) != len("ed25519:") + 43:
                raise ValueError(f"{key}.authorities: {text[:20]!r}… is not an ed25519:<base64url> public key")


class VerificationSection(_Section):
    """The gateway's canary checks of what nodes serve, and the reputation they feed (docs/security.md)."""

    enabled: bool = True
    interval_sec: Seconds = 60.0
    """Mean time between two checks of one trusted node (each gap is randomised around it)."""
    probation_interval_sec: Seconds = 1.0
    """Mean time between checks of a node on probation (new, or back from quarantine)."""
    probation_checks: Annotated[int, Meta(ge=1, le=20)] = 2
    """Passed checks a node needs before it leaves probation."""
    probation_share: Annotated[float, Meta(ge=0, le=1)] = 0.05
    """Share of user requests a node on probation may get while trusted nodes serve the model."""
    quarantine_sec: Seconds = 300.0
    """How long a node that failed a check gets no traffic before it is checked again."""
    max_per_minute: Annotated[int, Meta(ge=1)] = 120
    """Ceiling on canary requests per minute across all nodes (the prober's budget)."""
    max_tokens: Annotated[int, Meta(ge=1, le=256)] = 16
    """Completion length of a canary (short: it only has to tell answers apart)."""
    timeout_sec: Seconds = 30.0
    """A canary not answered within this counts as a failed attempt (not as a wrong answer)."""
    min_reputation: Annotated[float, Meta(ge=0, le=1)] = 0.2
    """Nodes whose reputation is below this get no traffic while a better node serves the model."""
    reputation_half_life_sec: Seconds = 600.0
    """How fast old evidence (good or bad) fades from a node's reputation."""
    probation_max_in_flight: Annotated[int, Meta(ge=1)] = 2
    """User requests nodes not yet trusted may hold at once, all of them together, while a trusted
    node serves the model (the concurrency half of ``probation_share``)."""
    first_check_wait_sec: Annotated[float, Meta(ge=0, le=60)] = 5.0
    """A request for a model whose only nodes are new and not checked yet waits up to this long for
    their first check (0 = never wait), so an instant liar cannot grab a gateway's first requests."""
    references: list[str] = msgspec.field(default_factory=list)
    """Peer ids of reference nodes (the operator's own or vetted ones): trusted from the start, their
    answer decides every check they take part in, and nobody can outvote them."""
    new_identities_per_source: Annotated[int, Meta(ge=0)] = 8
    """New node identities admitted from one observed source address per ``new_identity_window_sec``
    (0 = no cap); further ones wait, with no traffic and no checks, until the window frees a slot."""
    new_identity_window_sec: Seconds = 600.0
    """The window of ``new_identities_per_source``."""
    audit_share: Annotated[float, Meta(ge=0, le=1)] = 0.02
    """Share of a proven node's answered user requests replayed on a reference and compared
    (:mod:`tooti.trust.organic_audit`; 0 = no audits of user traffic)."""
    audit_new_share: Annotated[float, Meta(ge=0, le=1)] = 0.5
    """The same share for a node that has passed fewer than ``audit_new_passes`` audits, or failed
    one recently (its traffic is bounded by probation, so the cost is too). Above 0, once audits
    can pass for a model (a reference serves it or one of its nodes passed one), a trusted node
    also takes a full share of users only when one of its own audits passed (canaries alone are
    not enough: a node may tell them from users); 0 turns that off."""
    audit_new_passes: Annotated[int, Meta(ge=0)] = 5
    """Audits a node passes before it is audited at ``audit_share`` only."""
    audit_positions: Annotated[int, Meta(ge=1, le=16)] = 4
    """Token positions of an audited answer scored on the reference (one max_tokens=1 replay each)."""


class NodeSection(_Section):
    """The node's identity and who may use it."""

    name: Annotated[str, Meta(pattern=r"\A([A-Za-z0-9][A-Za-z0-9 ._-]{0,63})?\Z")] = "tooti-node"
    """Shown to gateways; letters, digits, space, ``.``, ``_``, ``-`` (gateways refuse other heartbeats)."""
    identity_key_file: str | None = None
    """Ed25519 key file; created (mode 0600) if missing. Default: ``$TOOTI_HOME/identity.key``."""
    allowed_gateway_peers: list[str] = msgspec.field(default_factory=list)
    """When non-empty, only these peer ids may send inference requests."""
    region: Annotated[str, Meta(pattern=r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")] | None = None
    max_concurrent_requests: Annotated[int, Meta(ge=1)] = 16
    write_window_ms: Annotated[float, Meta(ge=0, le=50)] = 5.0
    """After an answer's first token, a chunk from a backend streaming faster than this waits up to
    this long for the chunks behind it to share its frame write (a slower backend's go at once)."""
    admission: AdmissionSection = msgspec.field(default_factory=AdmissionSection)
    """Which gateways this node serves; ``allowlist`` mode uses ``allow`` (and ``allowed_gateway_peers``)."""

    def __post_init__(self) -> None:
        if self.allowed_gateway_peers and self.admission.mode == "allowlist":
            return  # the older key already lists the gateways
        self.admission.check("node.admission")


class ListenSection(_Section):
    """Where the libp2p host listens."""

    host: str = "0.0.0.0"  # noqa: S104 - a node must be reachable by peers
    tcp_port: Port = 4001
    announce_addrs: list[str] = msgspec.field(default_factory=list)
    """Multiaddrs announced instead of the listen address (port forwarding, a public IP); empty = listen."""

    def __post_init__(self) -> None:
        for addr in self.announce_addrs:
            if not addr.startswith(("/ip4/", "/ip6/", "/dns4/", "/dns6/", "/dns/")) or "/tcp/" not in addr:
                raise ValueError(f"listen.announce_addrs: {addr!r} is not a TCP multiaddr (/ip4/<ip>/tcp/<port>)")


class NetworkSection(_Section):
    """How to find the rest of the network."""

    bootstrap_peers: list[str] = msgspec.field(default_factory=list)
    """Multiaddrs ending in ``/p2p/<peer id>``, or ``/dnsaddr/<host>``."""
    mdns: bool = False
    dial_scopes: list[str] = msgspec.field(default_factory=list)
    """Scopes of peer-announced addresses this host dials: ``public``, ``private``, ``loopback``,
    ``link-local`` or CIDR ranges. Empty: ``public`` plus the scopes of the host's own listen address."""
    target_peers: Annotated[int, Meta(ge=1, le=256)] = 8
    """Connections kept to peers learned from gossip, the DHT and earlier runs (gateways on top)."""
    gateways: list[str] = msgspec.field(default_factory=list)
    """Gateways (``…/p2p/<id>``) to keep an outbound connection to; how a node behind NAT gets served."""
    remember_peers: bool = True
    """Save known peers between runs, so a restart does not depend on the bootstrap peers."""
    known_peers_file: str | None = None
    """Where known peers are saved; ``None`` = next to the identity key file (``<stem>.peers.json``)."""

    def __post_init__(self) -> None:
        for addr in self.gateways:
            if not addr.startswith(_MULTIADDR_PREFIXES) or "/p2p/" not in addr or addr.startswith("/dnsaddr/"):
                raise ValueError(f"network.gateways: {addr!r} is not a multiaddr ending in /p2p/<peer id>")
        from tooti.config.dial_scopes import parse_scope

        for scope in self.dial_scopes:
            try:
                parse_scope(scope)
            except ValueError as exc:
                raise ValueError(f"network.dial_scopes: {exc}") from None
        for addr in self.bootstrap_peers:
            if not addr.startswith(_MULTIADDR_PREFIXES):
                raise ValueError(
                    f"bootstrap peer {addr!r} is not a multiaddr (/ip4/…/tcp/…/p2p/<id> or /dnsaddr/<host>)"
                )
            if "/p2p/" not in addr and not addr.startswith("/dnsaddr/"):
                raise ValueError(f"bootstrap peer {addr!r} lacks /p2p/<peer id>")


class BackendSection(_Section):
    """The model server this node fronts. Plugin-specific settings go under ``backends.<type>``."""

    type: str = "llamacpp"
    base_url: str | None = None
    """Model server URL; ``None`` lets the plugin use its default or managed server."""
    connect_timeout_sec: Seconds = 5.0
    request_timeout_sec: Seconds = 300.0
    api_key: str | None = None


class ModelPrice(_Section):
    """Price per 1K tokens in the operator's chosen unit."""

    input_per_1k: Annotated[float, Meta(ge=0)] = 0.0
    output_per_1k: Annotated[float, Meta(ge=0)] = 0.0


class ModelsSection(_Section):
    """Which models the node advertises."""

    advertised: list[str] = msgspec.field(default_factory=list)
    """Empty: advertise every model the backend serves."""
    pricing: dict[str, ModelPrice] = msgspec.field(default_factory=dict)


class HeartbeatSection(_Section):
    """Heartbeat cadence; a node is stale after three missed intervals."""

    interval_sec: Seconds = 5.0


class TimeoutsSection(_Section):
    """Gateway-side limits on one request."""

    first_token_sec: Seconds = 30.0
    idle_sec: Seconds = 30.0
    """Longest gap between two streamed chunks."""
    total_request_sec: Seconds = 300.0


class StoreSection(_Section):
    """The gateway's accounting store: API keys with budgets and limits, usage rows, receipts."""

    enabled: bool = True
    """Off: only ``gateway.api_key_hashes`` authenticate and nothing is metered or recorded."""
    url: str | None = None
    """``sqlite:///PATH`` or ``postgresql://user:pass@host/db``; ``None`` = SQLite ``$TOOTI_HOME/gateway.db``."""
    default_reserve_tokens: Annotated[int, Meta(ge=1)] = 256
    """Completion tokens reserved from a budget when a request sets no ``max_tokens``."""
    key_refresh_sec: Annotated[float, Meta(gt=0, le=60)] = 2.0
    """How often a gateway looks for new, revoked or rotated keys."""
    flush_interval_sec: Annotated[float, Meta(gt=0, le=10)] = 0.25
    """How often buffered usage rows and settlements are written."""
    buffer_rows: Annotated[int, Meta(ge=100)] = 10_000
    """Usage rows held while the database is slow; beyond this, rows are counted and dropped."""

    def __post_init__(self) -> None:
        if self.url is not None and not self.url.startswith(("sqlite:", "postgresql:", "postgresql+", "postgres:")):
            raise ValueError("gateway.store.url must start with sqlite:/// or postgresql://")


class GatewaySection(_Section):
    """The OpenAI-compatible HTTP gateway."""

    listen: str = "127.0.0.1:8080"
    auth_mode: Literal["off", "optional", "required"] = "off"
    api_key_hashes: list[str] = msgspec.field(default_factory=list)
    """``sha256:<hex>`` of each accepted API key (``tooti gateway hash-key`` prints one)."""
    admin_key_hashes: list[str] = msgspec.field(default_factory=list)
    """``sha256:<hex>`` of each admin key: it shows usage per API key on the explorer page
    (``/explorer``). Empty (the default): nobody is admin and the usage section is not served."""
    rate_limit_rpm: Annotated[int, Meta(ge=0)] = 0
    """Requests per minute per API key (or per client address without auth); 0 = unlimited."""
    cors_allowed_origins: list[str] = msgspec.field(default_factory=list)
    max_body_bytes: Annotated[int, Meta(ge=1024)] = 4 * 1024 * 1024
    head_timeout_sec: Seconds = 5.0
    """A request line and headers must arrive within this long (slow-header clients are closed)."""
    body_timeout_sec: Seconds = 30.0
    """A whole request body must arrive within this long of its headers."""
    log_content: bool = False
    """Log prompts and completions. Off by default; never enable on a shared gateway."""
    store: StoreSection = msgspec.field(default_factory=StoreSection)
    admission: AdmissionSection = msgspec.field(default_factory=AdmissionSection)
    """Which nodes this gateway uses."""
    verification: VerificationSection = msgspec.field(default_factory=VerificationSection)

    def __post_init__(self) -> None:
        _check_host_port(self.listen, "gateway.listen")
        self.admission.check("gateway.admission")
        for h in (*self.api_key_hashes, *self.admin_key_hashes):
            if not h.startswith("sha256:") or len(h) != len("sha256:") + 64:
                raise ValueError(f"api key hash {h[:16]!r}… is not sha256:<64 hex digits>")


class AffinitySection(_Section):
    """Conversation affinity: prefer the node that served a request's prefix (``tooti.routing.affinity``)."""

    enabled: bool = True
    table_size: Annotated[int, Meta(ge=1, le=10_000_000)] = 65_536
    """Prefix keys remembered (LRU); about 100 bytes each."""
    chunk_bytes: Annotated[int, Meta(ge=64, le=1_048_576)] = 1024
    """One key per this many bytes of rendered prefix; prompts shorter than one chunk get no affinity."""
    max_prefix_kib: Annotated[int, Meta(ge=1, le=16_384)] = 64
    """The longest prefix hashed, in KiB."""
    load_ratio: Annotated[float, Meta(ge=1.0, le=100.0)] = 1.5
    load_margin: Annotated[int, Meta(ge=0, le=10_000)] = 1
    """The node holding the prefix is preferred while its in-flight plus queued requests are at most
    ``max(load_ratio * least, least + load_margin)`` of the least loaded candidate."""


class RoutingSection(_Section):
    """How the gateway picks a node."""

    strategy: str | None = None
    """Strategy name; ``None`` = ``balanced`` when tooti-router-strategies is installed, else ``simple``."""
    params: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    """Per-strategy parameters, e.g. ``params: {latency: {tolerance_ms: 20}}``."""
    max_attempts: Annotated[int, Meta(ge=1, le=10)] = 3
    cooldown_sec: Annotated[float, Meta(ge=0)] = 30.0
    overload_wait_sec: Annotated[float, Meta(ge=0, le=60)] = 2.0
    """When every node tried answered ``overloaded`` (at capacity), how long a request keeps trying
    them again, with a growing pause, before the client gets 429; 0 answers 429 at once."""
    affinity: AffinitySection = msgspec.field(default_factory=AffinitySection)


class MetricsSection(_Section):
    """Prometheus metrics endpoint of the node agent."""

    enabled: bool = False
    listen: str = "127.0.0.1:9090"

    def __post_init__(self) -> None:
        _check_host_port(self.listen, "metrics.listen")


class Config(_Section):
    """A whole tooti config file."""

    node: NodeSection = msgspec.field(default_factory=NodeSection)
    listen: ListenSection = msgspec.field(default_factory=ListenSection)
    network: NetworkSection = msgspec.field(default_factory=NetworkSection)
    backend: BackendSection = msgspec.field(default_factory=BackendSection)
    backends: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    """Each backend plugin's own section, validated against the plugin's ``config_type``."""
    models: ModelsSection = msgspec.field(default_factory=ModelsSection)
    heartbeat: HeartbeatSection = msgspec.field(default_factory=HeartbeatSection)
    timeouts: TimeoutsSection = msgspec.field(default_factory=TimeoutsSection)
    gateway: GatewaySection = msgspec.field(default_factory=GatewaySection)
    routing: RoutingSection = msgspec.field(default_factory=RoutingSection)
    metrics: MetricsSection = msgspec.field(default_factory=MetricsSection)
