"""The ``clipper`` command line: apply, diff, delete, get, status, history, rollback, watch, sync, build,
schema.

Only argparse is imported at module level so that ``clipper --help`` stays fast; every command
imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import sys

from reconciler.exitcodes import EXIT_BROKEN_PIPE
from reconciler.exitcodes import EXIT_CHANGES as EXIT_CHANGES
from reconciler.exitcodes import EXIT_ERROR as EXIT_ERROR
from reconciler.exitcodes import EXIT_OK as EXIT_OK


def _manifest_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("-f", "--filename", action="append", dest="files", required=required, metavar="PATH",
                   help="manifest file or directory (recursive); '-' reads stdin; repeatable")  # fmt: skip


def _owner_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--owner", help="name of this manifest set, recorded on what it creates "
                   "(clipper.ai/managed-by); default: the Cluster's name")  # fmt: skip
    p.add_argument("--prune", action="store_true", help="delete managed objects absent from the manifests")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipper",
        description="Declarative Clipper: apply manifests (Cluster, Model, Application) to a cluster.",
    )
    parser.add_argument("--no-color", action="store_true", help="plain output")
    parser.add_argument("--version", action=_Version, help="print the version of clipper and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("apply", help="converge the cluster to the manifests (starts it if needed)")
    _manifest_args(p)
    _owner_args(p)
    p.add_argument("--lock-timeout", type=float, default=60.0, metavar="S",
                   help="seconds to wait for a concurrent apply (0: fail at once)")  # fmt: skip
    p.add_argument("--output", choices=["text", "json"], default="text")
    p.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                   help="after applying, wait until every object is converged and healthy (default: "
                   "--wait; then 'clipper apply && clipper diff' holds)")  # fmt: skip
    p.add_argument("--timeout", type=float, default=300.0, metavar="S",
                   help="with --wait: seconds to wait before failing with what has not converged")  # fmt: skip

    p = sub.add_parser("diff", help="show what apply would do; exit 0 no changes, 1 changes, 2 error")
    _manifest_args(p)
    _owner_args(p)
    p.add_argument("--output", choices=["text", "json"], default="text")
    p.add_argument("-v", "--verbose", action="store_true", help="also list unchanged objects")

    p = sub.add_parser("delete", help="remove what the manifests describe")
    _manifest_args(p)
    p.add_argument("--owner", help="manifest set name (default: the Cluster's name)")
    p.add_argument("--cluster", action="store_true", help="also stop the cluster itself")
    p.add_argument("--lock-timeout", type=float, default=60.0, metavar="S",
                   help="seconds to wait for a concurrent apply (0: fail at once)")  # fmt: skip

    for name, text in (
        ("get", "list apps, models or replicas"),
        ("status", "per-object sync and health; exit 0 only when all are Synced and Healthy"),
    ):
        p = sub.add_parser(name, help=text)
        if name == "get":
            p.add_argument("what", choices=["apps", "models", "replicas"], nargs="?", default="apps")
        _manifest_args(p, required=False)
        p.add_argument("--cluster", metavar="NAME", help="without -f: the local cluster (in CLIPPER_HOME) to "
                       "look at; default: the only one there")  # fmt: skip
        p.add_argument("--output", choices=["text", "json", "yaml"] if name == "status" else ["text", "json"],
                       default="text")  # fmt: skip
        if name == "status":
            p.add_argument("--owner", help="with -f: the manifest set's name (default: the Cluster's name)")

    p = sub.add_parser("watch", help="apply on every manifest change and repair drift periodically")
    _manifest_args(p)
    _owner_args(p)
    p.add_argument("--interval", type=float, default=30.0, metavar="S", help="seconds between drift checks")
    p.add_argument(
        "--debounce", type=float, default=0.5, metavar="S", help="quiet time before applying an edit"
    )
    p.add_argument("--lock-timeout", type=float, default=60.0, metavar="S")
    p.add_argument("--max-backoff", type=float, default=300.0, metavar="S",
                   help="after failed applies, retry after --interval doubled per failure, at most this")  # fmt: skip

    p = sub.add_parser("sync", help="pull manifests from a git repository; apply them on every new commit "
                       "and every --interval (exit status with --once: 0 synced, 2 failed)")  # fmt: skip
    p.add_argument("--repo", required=True, metavar="URL", help="a local path, file://, https://, ssh://, "
                   "git:// or user@host:path (credentials never in the URL: see --token-file, --ssh-key)")  # fmt: skip
    p.add_argument("--ref", default="HEAD", metavar="REF", help="branch, tag or commit id (default: the "
                   "repository's HEAD)")  # fmt: skip
    p.add_argument("--path", default=".", metavar="DIR", help="the manifests' directory in the repository")
    _owner_args(p)
    p.add_argument("--interval", type=_seconds, default=60.0, metavar="DURATION",
                   help="look for new commits and repair drift this often (60, 60s, 5m; default 60 s)")  # fmt: skip
    p.add_argument("--once", action="store_true", help="one sync, then exit (CI): 0 synced, 2 failed")
    p.add_argument("--max-backoff", type=_seconds, default=300.0, metavar="DURATION",
                   help="after failures, retry after --interval doubled per failure, at most this")  # fmt: skip
    p.add_argument("--timeout", type=float, default=300.0, metavar="S",
                   help="seconds an apply may take to converge before the sync counts as failed")  # fmt: skip
    p.add_argument("--lock-timeout", type=float, default=60.0, metavar="S")
    p.add_argument("--state-dir", metavar="DIR", help="where the clone and work trees live (0700; default: "
                   "$CLIPPER_HOME/sync/<repo>-<hash>)")  # fmt: skip
    p.add_argument("--name", help="this sync's name in notifications (default: the state directory's)")
    p.add_argument("--git-timeout", type=float, default=120.0, metavar="S", help="seconds per git command")
    p.add_argument("--token-file", metavar="FILE", help="https: a file whose first line is the token")
    p.add_argument("--token-env", metavar="VAR", help="https: an environment variable holding the token")
    p.add_argument("--username", default="git", help="https: the user name sent with the token (default git)")
    p.add_argument("--ssh-key", metavar="FILE", help="ssh: the private key file")
    p.add_argument("--known-hosts", metavar="FILE", help="ssh: accept only the host keys in this file")
    p.add_argument("--verify-signatures", action="store_true",
                   help="refuse revisions not signed by a key in --gpg-keyring (the last good one stays)")  # fmt: skip
    p.add_argument("--gpg-keyring", action="append", metavar="FILE|DIR",
                   help="trusted OpenPGP public keys (a file, or a directory of key files); repeatable")  # fmt: skip
    p.add_argument("--notify", metavar="URL", help="POST a JSON event here on every change of sync or health")
    p.add_argument("--notify-timeout", type=float, default=5.0, metavar="S")
    p.add_argument("--metrics-port", type=int, metavar="PORT", help="serve Prometheus metrics of the loop")
    p.add_argument("--metrics-address", default="127.0.0.1", metavar="ADDR", help="default 127.0.0.1")

    p = sub.add_parser("controller", help="run in a Kubernetes cluster: reconcile the namespace's Cluster, "
                       "Model and Application resources (clipper.ai/v1) under a Lease")  # fmt: skip
    p.add_argument("--namespace", metavar="NS", help="the namespace to reconcile, which holds the Lease "
                   "(default: $POD_NAMESPACE, else the kubeconfig's namespace, else 'default')")  # fmt: skip
    p.add_argument("--resync", type=_seconds, default=30.0, metavar="SECONDS",
                   help="reconcile at least this often, events or not (drift repair; default 30)")  # fmt: skip
    p.add_argument("--lease-name", default="clipper-controller", metavar="NAME",
                   help="the coordination.k8s.io Lease of the leader election (default clipper-controller)")  # fmt: skip
    p.add_argument("--lease-duration", type=int, default=15, metavar="SECONDS",
                   help="a leader that has not renewed the Lease for this long loses it (default 15)")  # fmt: skip
    p.add_argument("--health-port", type=int, default=8081, metavar="PORT",
                   help="serve /healthz and /readyz here (default 8081)")  # fmt: skip
    p.add_argument("--kubeconfig", metavar="FILE", help="outside a pod: the kubeconfig (default: $KUBECONFIG, "
                   "~/.kube/config); in a pod the service account's configuration is used")  # fmt: skip
    p.add_argument("--context", metavar="NAME", help="the kubeconfig's context (default: its current one)")

    p = sub.add_parser("history", help="the cluster's applies: time, revision, who, changes, result")
    _manifest_args(p, required=False)
    p.add_argument("--cluster", metavar="NAME", help="without -f: the local cluster (in CLIPPER_HOME) to "
                   "look at; default: the only one there")  # fmt: skip
    p.add_argument("--output", choices=["text", "json"], default="text")

    p = sub.add_parser("rollback", help="apply an earlier apply's desired state again (default: the "
                       "previous successful one; N: its # in clipper history)")  # fmt: skip
    p.add_argument("number", nargs="?", type=int, metavar="N")
    _manifest_args(p)
    _owner_args(p)
    p.add_argument("--lock-timeout", type=float, default=60.0, metavar="S",
                   help="seconds to wait for a concurrent apply (0: fail at once)")  # fmt: skip
    p.add_argument("--output", choices=["text", "json"], default="text")

    p = sub.add_parser("rollout", help="a model's canary/blueGreen rollout: status, promote (to 100%% now), "
                       "abort (roll back now), retry (forget a rolled-back version)")  # fmt: skip
    p.add_argument("action", choices=["status", "promote", "abort", "retry"])
    p.add_argument("model", metavar="MODEL")
    _manifest_args(p, required=False)
    p.add_argument("--cluster", metavar="NAME", help="without -f: the local cluster (in CLIPPER_HOME) to "
                   "look at; default: the only one there")  # fmt: skip
    p.add_argument("--output", choices=["text", "json"], default="text")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S",
                   help="promote/abort while an apply drives the rollout: seconds to wait for it to act")  # fmt: skip

    p = sub.add_parser("build", help="build the model images of the manifests' python/pyspark Models (no "
                       "cluster needed); -o: the manifests with those Models' sources as images")  # fmt: skip
    _manifest_args(p)
    p.add_argument("--registry", metavar="R", help="prefix the images with this registry (default: the "
                   "Cluster's registry)")  # fmt: skip
    p.add_argument("--push", action="store_true",
                   help="push the images to the registry; print them by digest")  # fmt: skip
    p.add_argument("--load", metavar="containerd:SOCKET", help="also import the images into this containerd "
                   "(a cluster whose nodes use it)")  # fmt: skip
    p.add_argument("-o", "--output-file", dest="output_file", metavar="OUT.yaml",
                   help="write the manifests with each built Model's source replaced by its image "
                   "('-': stdout)")  # fmt: skip

    p = sub.add_parser(
        "schema", help="write the JSON Schemas (clipper.schema.json: any manifest; one per kind)"
    )
    p.add_argument("directory", nargs="?", metavar="DIR",
                   help="where to write; default: schemas/json/ of the source checkout clipper runs from "
                   "(an installed clipper needs DIR)")  # fmt: skip
    p.add_argument("--out", dest="out", metavar="DIR", help="same as DIR")
    return parser


def _seconds(text: str) -> float:
    """A duration: ``90``, ``90s``, ``500ms``, ``5m``, ``1h`` (seconds when no unit), above 0."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    t = text.strip().lower()
    unit = next((u for u in units if t.endswith(u)), "")
    try:
        value = float(t[: len(t) - len(unit)]) * units.get(unit, 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (say 60, 60s, 5m or 1h)") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"a duration above 0 is needed, not {text!r}")
    return value


class _Version(argparse.Action):
    """``--version``; the installed distribution's version is looked up only when asked for."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help=str(kwargs.get("help", "")))

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("clipper")
        except PackageNotFoundError:  # run from a checkout that was never installed
            v = "unknown (not installed)"
        print(f"clipper {v}")
        parser.exit()


def _quiet_broken_pipe() -> int:
    """The reader of our stdout went away (``clipper diff | head``): exit without a traceback.

    stdout is pointed at /dev/null so that the interpreter's final flush does not complain either.
    """
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_BROKEN_PIPE


def _dump_stacks_on_sigusr1() -> None:
    """``kill -USR1 <pid>`` prints every thread's stack to stderr, the process goes on: where a
    command that seems stuck is (a test that gives up on a command sends it first)."""
    import faulthandler
    import signal

    try:
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    except (AttributeError, ValueError, OSError, RuntimeError):  # no SIGUSR1, or stderr has no fd
        pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _dump_stacks_on_sigusr1()
    from reconciler import commands

    try:
        return commands.run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _quiet_broken_pipe()


if __name__ == "__main__":
    sys.exit(main())
