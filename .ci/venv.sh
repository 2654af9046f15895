# Sourced by quickstart.sh and test.sh (from the repository root): the virtual environment of this
# clone, .venv/ (git-ignored). `ensure_venv EXTRAS` creates it with python3 and installs this package
# (editable) with the given extras only when what the commands need is missing: the `clipper` entry
# point, this clone's package (not merely the working directory, which imports anyway) and every
# dependency. Then .venv/bin goes first on PATH. The system Python is never modified.

VENV="$PWD/.venv"

# The check is cheap (no pip): a second run goes straight on.
venv_ready() {
  [ -x "$VENV/bin/clipper" ] && [ -x "$VENV/bin/python" ] || return 1
  # -I: isolated, the working directory is not on sys.path, so only an installed package imports
  "$VENV/bin/python" -I - "$PWD" "$1" <<'PY' >/dev/null 2>&1
import importlib.metadata as md
import os
import sys

root, extras = sys.argv[1], [e for e in sys.argv[2].split(",") if e]
import clipper  # noqa: E402
import tomllib  # noqa: E402

from packaging.requirements import Requirement  # noqa: E402

if os.path.dirname(os.path.dirname(os.path.realpath(clipper.__file__))) != os.path.realpath(root):
    sys.exit("installed from another clone")
# what pyproject.toml asks for now (not the metadata of the last install): an added or raised
# requirement is installed on the next run
project = tomllib.load(open(os.path.join(root, "pyproject.toml"), "rb"))["project"]
wanted = list(project["dependencies"])
for extra in extras:
    wanted += project["optional-dependencies"][extra]
for text in wanted:
    req = Requirement(text)
    if req.marker is None or req.marker.evaluate({"extra": ""}):
        if not req.specifier.contains(md.version(req.name), prereleases=True):
            sys.exit(f"{req.name} {md.version(req.name)} does not satisfy {req}")
PY
}

_make_venv() {
  if ! command -v python3 >/dev/null; then
    echo "error: python3 (>= 3.11) is needed: apt-get install python3 python3-venv" >&2
    exit 1
  fi
  if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: Python >= 3.11 is needed, python3 is $(python3 -V 2>&1)" >&2
    exit 1
  fi
  echo "==> python3 -m venv .venv"
  if python3 -m venv "$VENV" >/dev/null 2>&1 && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    return
  fi
  rm -rf "$VENV"  # Debian's python3 without python3-venv leaves one without pip
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> apt-get install python3-venv"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
    python3 -m venv "$VENV"
  else
    echo "error: python3 -m venv failed; install the venv module (sudo apt-get install python3-venv) and run again" >&2
    exit 1
  fi
}

ensure_venv() {  # EXTRAS: "" or e.g. "dev,pyspark"
  local extras=$1 spec=.
  [ -n "$extras" ] && spec=".[$extras]"
  if ! venv_ready "$extras"; then
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1 || _make_venv
    echo "==> pip install -e '$spec' (into .venv)"
    "$VENV/bin/python" -m pip install -q -e "$spec"
    if ! venv_ready "$extras"; then
      echo "error: .venv is still missing something after pip install -e '$spec'" >&2
      exit 1
    fi
  fi
  export VIRTUAL_ENV="$VENV"
  export PATH="$VENV/bin:$PATH"
}
