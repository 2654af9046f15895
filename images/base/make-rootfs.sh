#!/usr/bin/env bash
# Build the Debian bookworm base image offline-from-registries: debootstrap a minbase root file system
# from Debian's package mirror and `docker import` it.
#
#   images/base/make-rootfs.sh [TAG]       (default TAG: clipper/debian-base:bookworm)
#
# Env: DEBIAN_MIRROR (default: the first URI of this machine's apt sources, else deb.debian.org),
#      CLIPPER_IMAGES_BUILD_DIR (default images/build) for the rootfs and the .deb cache.
# The image holds python3 (3.11 on bookworm), python3-venv, tini and ca-certificates; apt inside it
# points at the same mirror so Dockerfiles can `apt-get install` more (builds run with the host network).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tag=${1:-clipper/debian-base:bookworm}
build=${CLIPPER_IMAGES_BUILD_DIR:-$here/../build}
mkdir -p "$build"
build=$(cd "$build" && pwd)

if [[ -z "${DEBIAN_MIRROR:-}" ]]; then
  DEBIAN_MIRROR=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
    | head -1 | awk '{print $2}' || true)
  DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
fi
security=${DEBIAN_MIRROR%/debian}/debian-security
packages=python3,python3-venv,tini,ca-certificates

rootfs=$build/rootfs.tmp
cache=$build/debs
mkdir -p "$cache"
rm -rf "$rootfs"
echo "[base] debootstrap bookworm from $DEBIAN_MIRROR (packages: $packages)"
debootstrap --variant=minbase --include="$packages" --cache-dir="$cache" bookworm "$rootfs" "$DEBIAN_MIRROR" \
  >"$build/debootstrap.log" 2>&1 || { tail -30 "$build/debootstrap.log" >&2; exit 1; }

# apt sources and slim-image settings, as Debian's official docker images do
rm -f "$rootfs/etc/apt/sources.list"
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<SRC
Types: deb
URIs: $DEBIAN_MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
cat >"$rootfs/etc/apt/apt.conf.d/90clipper" <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Retries "3";
APT
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/90clipper-excludes" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/info/*
DPKG
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/usr/share/doc/*/[!c]* \
  "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* "$rootfs"/tmp/* "$rootfs"/var/log/*.log
: >"$rootfs/etc/machine-id"
printf 'nameserver 127.0.0.11\n' >"$rootfs/etc/resolv.conf"

echo "[base] docker import -> $tag"
tar --numeric-owner -C "$rootfs" -c . | docker import \
  --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' \
  --message "debootstrap --variant=minbase bookworm $DEBIAN_MIRROR (+$packages)" - "$tag"
rm -rf "$rootfs"
