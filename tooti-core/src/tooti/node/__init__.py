"""The node agent: serves a local model server's inference to the network and announces it.

``tooti.node.handler`` and ``tooti.node.local`` are event-loop agnostic (plain awaits and anyio);
the agent's trio main lives in ``tooti.node.agent``.
"""

from __future__ import annotations
