"""The gateway's long-lived state and the routing decision for one request."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tooti.gateway.api_errors import ApiError
from tooti.gateway.candidates import ModelMemory, ServedNames, build_candidates
from tooti.gateway.observations import Observations
from tooti.gateway.request_hooks import RequestHooks
from tooti.gateway.strategies import StrategyResolver, UnknownStrategy
from tooti.routing.eligibility import eligible

if TYPE_CHECKING:
    from tooti.config.model import Config
    from tooti.gateway.metrics import GatewayMetrics
    from tooti.network import Network, NodeView
    from tooti.plugins.host import PluginHost
    from tooti.routing.protocol import Decision, Preferences

__all__ = ["Gateway"]


class Gateway:
    """Everything the request handlers share: network, strategies, observations, metrics, config."""

    def __init__(self, config: Config, network: Network, plugin_host: PluginHost, metrics: GatewayMetrics) -> None:
        self.config = config
        self.network = network
        self.metrics = metrics
        self.observations = Observations(config.routing.cooldown_sec)
        self.hooks = RequestHooks()
        """Frame checks and completion callbacks (see :mod:`tooti.gateway.request_hooks`)."""
        self.models = ModelMemory()
        self.served = ServedNames()
        self.strategies = StrategyResolver(plugin_host, config.routing.strategy, config.routing.params)

    def _housekeeping(self, nodes: list[NodeView]) -> None:
        """Once a second: remember served models, forget peers that left (bounded memory)."""
        self.models.note(nodes, self.served)
        live = {n.peer_id for n in nodes}
        if len(self.observations) > len(live) + 16:
            self.observations.forget_except(live)
        if len(self.served) > len(live) + 16:
            self.served.forget_except(live)

    def decide(self, prefs: Preferences) -> Decision:
        """Order the nodes that may serve ``prefs.model``; raise 404/503/400 when none may.

        Nodes in cooldown are skipped while another node is eligible; when every node that serves
        the model is cooling down they are tried anyway, because refusing outright would turn one
        transient failure into an outage of ``cooldown_sec`` (a LiteLLM complaint).
        """
        try:
            strategy = self.strategies.get(prefs.strategy)
        except UnknownStrategy as exc:
            raise ApiError(400, str(exc), param="tooti.strategy", code="invalid_preference") from None
        nodes = self.network.nodes()
        if self.models.due():
            self._housekeeping(nodes)
        candidates = build_candidates(nodes, prefs.model, self.observations, served_names=self.served)
        if not candidates:
            if self.models.known(prefs.model):
                raise ApiError(503, f"no live node serves model {prefs.model!r} right now", code="no_live_node")
            raise ApiError(
                404, f"model {prefs.model!r} does not exist on this network", param="model", code="model_not_found"
            )
        if not eligible(candidates, prefs):
            candidates = build_candidates(
                nodes, prefs.model, self.observations, ignore_cooldown=True, served_names=self.served
            )
        decision = strategy.rank(candidates, prefs)
        if not decision.ordered:
            raise ApiError(503, f"no node for {prefs.model!r} matches the routing preferences", code="no_eligible_node")
        return decision
