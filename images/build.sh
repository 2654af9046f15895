#!/usr/bin/env bash
# Build every Clipper image offline, skipping images already built from the same inputs.
#
#   images/build.sh [--force] [--with-pyspark] [--no-prometheus]
#
# Images (NAME = ${CLIPPER_REGISTRY:-clipper}, VERSION = clipper.__version__):
#   clipper/debian-base:bookworm        debootstrap'ed root file system (images/base/make-rootfs.sh)
#   NAME/py311-rpc:VERSION              venv with the clipper wheel and its dependencies
#   NAME/query_frontend:VERSION, NAME/management_frontend:VERSION, NAME/redis:VERSION
#   NAME/python311-closure-container:VERSION  (also tagged NAME/python-closure-container:VERSION)
#   NAME/noop-container:VERSION         answers "1.0" to every input (the original's no-op container)
#   NAME/controller:VERSION             `clipper controller`, the in-cluster controller (deploy/)
#   NAME/prometheus:VERSION             Debian's prometheus package (skip with --no-prometheus)
#   NAME/pyspark311-container:VERSION   only with --with-pyspark (downloads pyspark, ~320 MB)
#
# Env: BASE_IMAGE (default clipper/debian-base:bookworm; e.g. python:3.11-slim where a registry
# exists), CLIPPER_IMAGES_BUILD_DIR (default images/build: contexts, wheel and .deb caches),
# CLIPPER_IMAGE_COMPILE: the clipper wheel in the images has its prediction hot path compiled with
# mypyc (clipper/compiled.py) when the python3 running this script can build it for the image's
# Python: mypy importable (the dev extra), a C compiler, the Python headers, the same minor version.
# auto (default) falls back to the pure-Python wheel, saying why; 1 makes that an error; 0 never
# compiles. The images carry the outcome as the label ai.clipper.hot-path (compiled | interpreted).
# Each image carries the label ai.clipper.build-hash: a hash of its Dockerfile, its parent and (for
# py311-rpc) the project's source; an image whose label matches is not rebuilt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

force=0 pyspark=0 prometheus=1
for arg in "$@"; do
  case $arg in
    --force) force=1 ;;
    --with-pyspark) pyspark=1 ;;
    --no-prometheus) prometheus=0 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-$(docker buildx version >/dev/null 2>&1 && echo 1 || echo 0)}
registry=${CLIPPER_REGISTRY:-clipper}
version=$(python3 -c 'import re,sys; print(re.search(r"__version__ = \"([^\"]+)\"", open("clipper/__init__.py").read()).group(1))')
base=${BASE_IMAGE:-clipper/debian-base:bookworm}
build=${CLIPPER_IMAGES_BUILD_DIR:-$here/build}
mkdir -p "$build/context/deps" "$build/context/project" "$build/pyspark-context/pyspark" "$build/empty"
t_start=$SECONDS

log() { printf '[build %4ds] %s\n' $((SECONDS - t_start)) "$*"; }
sha() { sha256sum | cut -c1-16; }
image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }
built_hash() { docker image inspect -f '{{index .Config.Labels "ai.clipper.build-hash"}}' "$1" 2>/dev/null || true; }

# build NAME DOCKERFILE_DIR CONTEXT HASH_INPUT PARENT_IMAGE [extra tags...]; the labels in
# extra_labels go on the image too (a child image inherits its parent's)
extra_labels=()
build() {
  local name=$1 dir=$2 context=$3 input=$4 parent=$5; shift 5
  local tag=$registry/$name:$version hash t0=$SECONDS
  hash=$( { cat "$here/$dir/Dockerfile"; echo "$input"; image_id "$parent"; } | sha)
  if [[ $force == 0 && "$(built_hash "$tag")" == "$hash" ]]; then
    log "$tag is up to date ($hash)"
  else
    log "building $tag"
    docker build --network host --force-rm -q -f "$here/$dir/Dockerfile" \
      --build-arg BASE_IMAGE="$parent" --build-arg CLIPPER_VERSION="$version" \
      --label ai.clipper.build-hash="$hash" --label ai.clipper.version="$version" "${extra_labels[@]}" \
      -t "$tag" "$context" >"$build/$name.log" 2>&1 || { tail -40 "$build/$name.log" >&2; exit 1; }
    log "built $tag in $((SECONDS - t0))s"
  fi
  for extra in "$@"; do docker tag "$tag" "$registry/$extra:$version"; done
}

# 1. base root file system
if [[ $base == clipper/debian-base:bookworm && -z "$(image_id "$base")" ]]; then
  log "debootstrapping $base"
  "$here/base/make-rootfs.sh" "$base"
fi
[[ -n "$(image_id "$base")" ]] || { echo "base image $base is missing (no registry to pull it from?)" >&2; exit 1; }

# 2. wheels: the project's dependencies (cached by pyproject.toml) and the project itself (by source)
src_hash=$( (git ls-files -co --exclude-standard -- clipper clipper_admin schemas reconciler pyproject.toml 2>/dev/null \
  || find clipper clipper_admin schemas reconciler pyproject.toml -type f) | grep -v -E '__pycache__|\.pyc$' | LC_ALL=C sort \
  | while read -r f; do [[ -f $f ]] && { echo "$f"; cat "$f"; }; done | sha)
# the hot path: compiled when this machine can build it for the image's Python (header comment)
image_py=$(docker run --rm --entrypoint python3 "$base" -c 'import platform; print(platform.python_version())')
compile_blocker() {  # prints why the hot path cannot be compiled here; nothing when it can
  local here_py
  here_py=$(python3 -c 'import platform; print(platform.python_version())')
  if [[ ${here_py%.*} != "${image_py%.*}" ]]; then
    echo "python3 here is $here_py, the image's is $image_py (a compiled module fits one minor version)"
  elif ! python3 -c 'import mypyc.build, setuptools, pydantic' 2>/dev/null; then
    echo "python3 here ($(command -v python3)) cannot import mypyc, setuptools and pydantic (pip install -e '.[dev]')"
  elif ! command -v cc >/dev/null; then
    echo "no C compiler (apt-get install gcc)"
  elif ! python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
    echo "no Python headers (apt-get install python3-dev)"
  fi
}
compile_mode=${CLIPPER_IMAGE_COMPILE:-auto}
case $compile_mode in
  0) hot_path=interpreted ;;
  1|auto)
    why_not=$(compile_blocker)
    if [[ -z $why_not ]]; then
      hot_path=compiled
    elif [[ $compile_mode == 1 ]]; then
      echo "CLIPPER_IMAGE_COMPILE=1, but the hot path cannot be compiled here: $why_not" >&2; exit 1
    else
      hot_path=interpreted
      log "the hot path will be interpreted in the images: $why_not"
    fi ;;
  *) echo "CLIPPER_IMAGE_COMPILE must be auto, 1 or 0, not '$compile_mode'" >&2; exit 2 ;;
esac
deps_hash=$( { cat pyproject.toml; image_id "$base"; cat "$(pip config get global.constraint 2>/dev/null || echo /dev/null)" 2>/dev/null; } | sha)
rpc_tag=$registry/py311-rpc:$version
rpc_input="$src_hash hot path $hot_path"
rpc_hash=$( { cat "$here/py-rpc/Dockerfile"; echo "$rpc_input"; image_id "$base"; } | sha)
if [[ $force == 1 || "$(built_hash "$rpc_tag")" != "$rpc_hash" ]]; then
  if [[ "$(cat "$build/context/deps/.stamp" 2>/dev/null)" != "$deps_hash" ]]; then
    log "downloading/building dependency wheels (pip wheel)"
    rm -rf "$build/context/deps"/*.whl
    # wheels for the image's Python (bookworm's 3.11.2) and platform
    python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
      >"$build/context/deps/requirements.txt"
    # pip evaluates markers for this machine's Python: add what redis needs below 3.11.3 explicitly
    echo 'async-timeout>=4.0.3' >>"$build/context/deps/requirements.txt"
    pip download -q --only-binary=:all: --python-version "$image_py" -d "$build/context/deps" \
      -r "$build/context/deps/requirements.txt" >"$build/pip-wheel.log" 2>&1 || { tail -30 "$build/pip-wheel.log" >&2; exit 1; }
    echo "$deps_hash" >"$build/context/deps/.stamp"
  fi
  log "building the clipper wheel"
  # from a clean copy of the tracked and new files, so stale build/ or egg-info never leak in
  rm -rf "$build/context/project"/*.whl "$build/wheel-tmp" "$build/src"
  mkdir -p "$build/src"
  git ls-files -co --exclude-standard -z | xargs -0 -I{} sh -c '[ -f "{}" ] && echo "{}"' | tar -cf - -T - | tar -xf - -C "$build/src"
  built_hot_path=interpreted
  if [[ $hot_path == compiled ]]; then
    # mypyc type-checks the modules with the dependencies of this python3 (setup.py), hence no isolation
    log "compiling the hot path with mypyc (~1-2 min)"
    if (cd "$build/src" && CLIPPER_COMPILE=1 python3 -m pip wheel -q --no-build-isolation --no-deps -w "$build/wheel-tmp" .) \
      >"$build/pip-wheel.log" 2>&1; then
      built_hot_path=compiled
    elif [[ $compile_mode == 1 ]]; then
      tail -30 "$build/pip-wheel.log" >&2; exit 1
    else
      tail -15 "$build/pip-wheel.log" >&2
      log "compiling the hot path failed (above; $build/pip-wheel.log): the images get the pure-Python wheel"
      rm -rf "$build/wheel-tmp" "$build/src/build"
    fi
  fi
  if [[ $built_hot_path == interpreted ]]; then
    pip wheel -q --no-deps -w "$build/wheel-tmp" "$build/src" >"$build/pip-wheel.log" 2>&1 \
      || { tail -30 "$build/pip-wheel.log" >&2; exit 1; }
  fi
  mv "$build/wheel-tmp"/clipper-*.whl "$build/context/project/"
  rm -rf "$build/src"
  extra_labels=(--label "ai.clipper.hot-path=$built_hot_path")
fi

# 3. images
build py311-rpc py-rpc "$build/context" "$rpc_input" "$base"
extra_labels=()
build query_frontend query_frontend "$build/empty" "" "$rpc_tag"
build management_frontend management_frontend "$build/empty" "" "$rpc_tag"
build controller controller "$build/empty" "" "$rpc_tag"
build python311-closure-container python-closure-container "$build/empty" "" "$rpc_tag" python-closure-container
build noop-container noop-container "$here/noop-container" "$(cat "$here/noop-container/noop_model.py")" \
  "$registry/python311-closure-container:$version"
build redis redis "$build/empty" "" "$base"
if [[ $prometheus == 1 ]]; then
  build prometheus prometheus "$build/empty" "" "$base"
fi
if [[ $pyspark == 1 ]]; then
  spark_req=$(python3 -c 'import pyspark; print("pyspark==" + pyspark.__version__)' 2>/dev/null || echo pyspark)
  if ! ls "$build/pyspark-context/pyspark"/pyspark-*.whl >/dev/null 2>&1 || [[ "$(cat "$build/pyspark-context/pyspark/.stamp" 2>/dev/null)" != "$spark_req" ]]; then
    log "downloading $spark_req wheels"
    rm -f "$build/pyspark-context/pyspark"/*.whl
    # --use-pep517: pyspark is an sdist without pyproject.toml; pip < 23.1 (Debian's python3 -m venv
    # seeds 23.0.1) would otherwise run its setup.py bdist_wheel, which needs the wheel package
    pip wheel -q --use-pep517 -w "$build/pyspark-context/pyspark" "$spark_req" >"$build/pip-pyspark.log" 2>&1 || { tail -30 "$build/pip-pyspark.log" >&2; exit 1; }
    echo "$spark_req" >"$build/pyspark-context/pyspark/.stamp"
  fi
  build pyspark311-container pyspark-container "$build/pyspark-context" "$spark_req" "$registry/python311-closure-container:$version" pyspark-container
fi
log "done: images for clipper $version under $registry/ in $((SECONDS - t_start))s"
