"""Fixtures of the separate-hosts harness (:mod:`hosts`, loaded by path: test dirs are not packages).

``lab`` gives a fresh :class:`hosts.Lab` (namespaces with this run's id) and removes it afterwards,
also when the test failed. Where namespaces cannot be built (not root, no ``ip`` or ``nft``) the
tests are skipped with the reason, which pytest prints in the summary (``-ra`` in this repository's
settings) and which is also written to stderr here so it is never silent.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from types import ModuleType


def load_hosts() -> ModuleType:
    """Import ``tests/netns/hosts.py`` by path, once."""
    name = "tooti_tests_netns_hosts"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("hosts.py"))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lab_class():
    """The :class:`hosts.Lab` class, or a skip with the reason the machine cannot build namespaces."""
    hosts = load_hosts()
    reason = hosts.lab_unavailable_reason()
    if reason is not None:
        sys.stderr.write(f"\nnetns tests skipped: {reason}\n")
        pytest.skip(f"separate-host tests need network namespaces: {reason}")
    return hosts.Lab
