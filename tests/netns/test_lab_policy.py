"""The lab's CI policy: a machine that cannot build namespaces fails under CI=true, skips elsewhere.

These tests build no namespace (they simulate a non-root user), so they run anywhere.
"""

from __future__ import annotations

import os
import sys

import pytest


def test_a_lab_that_cannot_run_is_a_skip_with_its_reason_outside_ci(lab_refusal, monkeypatch, capsys):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="need network namespaces: simulated reason"):
        lab_refusal("simulated reason")
    assert "netns tests skipped: simulated reason" in capsys.readouterr().err  # never silent


def test_a_lab_that_cannot_run_fails_under_ci(lab_refusal, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"must run in CI .* simulated reason"):
        lab_refusal("simulated reason")


@pytest.mark.skipif(sys.platform != "linux", reason="the lab is Linux-only")
def test_a_non_root_user_is_told_why_before_any_namespace_is_made(hosts_module, monkeypatch):
    made = []
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(hosts_module.subprocess, "run", lambda *a, **k: made.append(a))
    assert hosts_module.lab_unavailable_reason() == "network namespaces need root (CI runs as root)"
    assert made == []
