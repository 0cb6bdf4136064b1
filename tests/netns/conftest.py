"""Fixtures of the separate-hosts harness (:mod:`hosts`, loaded by path: test dirs are not packages).

``lab`` gives a fresh :class:`hosts.Lab` (namespaces with this run's id) and removes it afterwards,
also when the test failed. Where namespaces cannot be built (not root, no ``ip`` or ``nft``) the
tests are skipped with the reason, which pytest prints in the summary (``-ra`` in this repository's
settings) and which is also written to stderr here so it is never silent. Under ``CI=true`` they
fail instead: CI runs as root with the tools installed by ``.ci/run``, so a lab that cannot be built
there is a broken CI machine, and a skip would hide that the separate-host tests never ran.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType
    from typing import NoReturn


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


def refuse(reason: str) -> NoReturn:
    """End a test that cannot build its lab: a failure under ``CI=true``, elsewhere a skip with the reason."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"separate-host tests must run in CI (CI=true) but cannot: {reason}", pytrace=False)
    sys.stderr.write(f"\nnetns tests skipped: {reason}\n")
    pytest.skip(f"separate-host tests need network namespaces: {reason}")


@pytest.fixture
def lab_refusal() -> Callable[[str], NoReturn]:
    """:func:`refuse` itself, for the test of the CI policy (which builds no namespace)."""
    return refuse


@pytest.fixture
def hosts_module() -> ModuleType:
    """The harness module, for tests of its checks that build no namespace."""
    return load_hosts()


@pytest.fixture(scope="module")
def lab_class():
    """The :class:`hosts.Lab` class; or, when the machine cannot build namespaces, :func:`refuse`."""
    hosts = load_hosts()
    reason = hosts.lab_unavailable_reason()
    if reason is not None:
        refuse(reason)
    return hosts.Lab
