"""Hook specifications: the reference for plugin authors.

tooti loads plugins from two entry-point groups, ``tooti.backends`` and ``tooti.routers``. An entry
point names a module or object carrying ``@tooti.hookimpl`` functions; its entry-point name is the
name users write in config (``backend.type``, ``routing.strategy``) and must equal the ``name``
class attribute of the class it registers. See ``docs/plugins/`` for the author guide.

Hooks are few and synchronous: they *register classes*. All I/O happens later on the objects built
from those classes (:class:`tooti.InferenceBackend`, :class:`tooti.RoutingStrategy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tooti.plugin_markers import hookspec

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tooti.backends.protocol import InferenceBackend
    from tooti.routing.protocol import RoutingStrategy

__all__ = ["TOOTI_HOOK_API", "tooti_register_backends", "tooti_register_routers"]

TOOTI_HOOK_API = 3
"""Version of this hook API, bumped when a hook or a registered class's contract changes.

2: backends may declare ``native_endpoints`` (adding ``"responses"`` requires ``responses`` and
``responses_stream``) and may implement ``completion_stream``; both optional, so version-1
backends keep working (the node translates ``/v1/responses`` to chat for them).

3: routing strategies only rank: the gateway filters eligibility once (``tooti.routing.eligible``)
and passes a bounded snapshot, all of which may be chosen; ``rank`` returns a permutation of it.
``Candidate`` lost ``stale``, ``in_cooldown`` and ``age_s`` and gained ``cooling`` (the gateway
tries cooling nodes after the others) and ``reputation`` (0..1). Incompatible for strategies that
read the removed fields."""


# -------------------------------------------------------------------------------------------------
# Registration hooks
# -------------------------------------------------------------------------------------------------


@hookspec
def tooti_register_backends() -> Sequence[type[InferenceBackend]]:
    """Return the backend classes this plugin provides.

    When and where:
        Called once per process, in the node agent (``tooti node start``, ``tooti up``) and by
        ``tooti plugins list`` / ``tooti config-check``, right after the plugin's entry point is
        loaded. Only the entry point named by ``backend.type`` is loaded by the node; the result is
        cached by the plugin host. Must not do I/O: return classes only.

    Result semantics:
        All results are collected. Each class's ``name`` must be unique across installed
        backends; a duplicate is a load error reported for both plugins.

    Returns:
        A sequence of classes implementing :class:`tooti.InferenceBackend`.

    Example:
        .. code-block:: python

            from tooti import hookimpl

            @hookimpl
            def tooti_register_backends():
                from tooti_backend_echo.backend import EchoBackend
                return [EchoBackend]

    .. versionadded:: 0.1
    """
    raise NotImplementedError


@hookspec
def tooti_register_routers() -> Sequence[type[RoutingStrategy]]:
    """Return the routing strategy classes this plugin provides.

    When and where:
        Called once per process in the gateway (``tooti gateway start``, ``tooti up``) for the
        entry point named by ``routing.strategy`` or by a request's ``tooti.strategy`` preference,
        and by ``tooti plugins list``. Must not do I/O: return classes only.

    Result semantics:
        All results are collected. Each class's ``name`` must be unique across installed routers,
        including the built-in ``simple`` strategy.

    Returns:
        A sequence of classes implementing :class:`tooti.RoutingStrategy`.

    Example:
        .. code-block:: python

            from tooti import hookimpl

            @hookimpl
            def tooti_register_routers():
                from my_router.strategy import RandomStrategy
                return [RandomStrategy]

    .. versionadded:: 0.1
    """
    raise NotImplementedError
