"""``clipper apply`` waits until what it applied is converged: ``apply && diff`` is a CI gate."""

from __future__ import annotations

import pytest

from tests.integration.test_reconciler import clipper, manifests, workspace  # noqa: F401

pytestmark = pytest.mark.slow


def test_apply_then_diff_holds_after_a_scale_down(workspace):  # noqa: F811
    work, env, ports = workspace
    f = str(work / "all.yaml")
    (work / "all.yaml").write_text(manifests(ports, replicas=3))
    clipper("apply", "-f", f, env=env, check=0)
    clipper("diff", "-f", f, env=env, check=0)
    (work / "all.yaml").write_text(manifests(ports, replicas=1))
    clipper("apply", "-f", f, env=env, check=0)
    proc = clipper("diff", "-f", f, env=env)
    # with --no-wait the stopped replicas are still listed for a moment: "replicas: 3 -> 1"
    assert proc.returncode == 0, proc.stdout + proc.stderr
