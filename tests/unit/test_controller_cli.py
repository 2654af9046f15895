"""``clipper controller``: its arguments and the mistakes it reports without a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli import build_parser, main


def test_defaults_are_the_contract_s() -> None:
    args = build_parser().parse_args(["controller"])
    assert (args.namespace, args.resync, args.lease_name, args.lease_duration, args.health_port) == (
        None, 30.0, "clipper-controller", 15, 8081)  # fmt: skip
    assert build_parser().parse_args(["controller", "--resync", "2m"]).resync == 120.0


def test_no_kubernetes_configuration_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert main(["--no-color", "controller"]) == 2
    err = capsys.readouterr().err
    assert "no usable Kubernetes configuration" in err and "--kubeconfig" in err
    assert "Traceback" not in err


def test_a_too_short_lease_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--no-color", "controller", "--lease-duration", "1"]) == 2
    assert "--lease-duration must be at least 3 seconds" in capsys.readouterr().err
