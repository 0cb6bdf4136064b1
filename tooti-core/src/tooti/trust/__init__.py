"""Who may take part, and whether what they serve can be believed.

One concern per module: :mod:`~tooti.trust.membership` (authority keys and signed certificates),
:mod:`~tooti.trust.revocation` (the revocation list), :mod:`~tooti.trust.admission` (the gateway's
and the node's admission policy), :mod:`~tooti.trust.frame_check` (every response frame a node sends,
checked against OpenAI's shapes), :mod:`~tooti.trust.reputation` (one decaying score per node),
:mod:`~tooti.trust.standing` (probation, trusted, quarantined), :mod:`~tooti.trust.canary_prompts`
(the prompt pool), :mod:`~tooti.trust.answer_checks` (what a canary answer proves) and
:mod:`~tooti.trust.prober` (the canary loop). docs/security.md explains the threat model.
"""

from __future__ import annotations
