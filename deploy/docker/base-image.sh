#!/usr/bin/env bash
# Makes sure the base image of every metatrain image, debian:bookworm, exists in the local
# Docker daemon. In order: it is already there (nothing to do); `docker pull` reaches a
# registry; else it is built here from Debian's archive with debootstrap and loaded with
# `docker import`. The last way needs only what `apt-get` already needs, so it works on
# machines that reach Debian's archive but no image registry.
#
#   deploy/docker/base-image.sh            # env: BASE_IMAGE, DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR
#
# The debootstrapped image follows what Debian's official image does (a minbase system, the
# bookworm, bookworm-updates and bookworm-security sources, no service starts from package
# scripts, no translations), with one difference: it keeps the downloaded .deb files after
# an install (the official image deletes them through /etc/apt/apt.conf.d/docker-clean), so
# that the Dockerfiles' apt cache mounts have something to cache. Nothing else reads that.
set -euo pipefail

IMAGE=${BASE_IMAGE:-debian:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SUITE=bookworm

say() { echo "base-image: $*" >&2; }

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  say "$IMAGE is present"
  exit 0
fi

# A registry that is unreachable fails within a second (DNS); one that is slow gets 5 minutes.
if timeout 300 docker pull -q "$IMAGE" >/dev/null 2>&1; then
  say "pulled $IMAGE"
  exit 0
fi
say "no registry serves $IMAGE here; building it with debootstrap from $MIRROR"

if [[ $(id -u) -ne 0 ]]; then
  say "debootstrap needs root (it creates device nodes and sets owners); run as root or with sudo"
  exit 2
fi
command -v debootstrap >/dev/null || { say "debootstrap is missing (apt-get install debootstrap)"; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/metatrain-rootfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs

# minbase: essential packages and apt only, as in the official image.
debootstrap --variant=minbase --arch=amd64 "$SUITE" "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 || {
  tail -20 "$work/debootstrap.log" >&2
  say "debootstrap failed (full log above, last 20 lines)"
  exit 1
}

rm -f "$rootfs/etc/apt/sources.list"
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

# Package scripts must not start services inside an image build.
printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
chmod 755 "$rootfs/usr/sbin/policy-rc.d"
cat >"$rootfs/etc/apt/apt.conf.d/docker-no-languages" <<'EOF'
Acquire::Languages "none";
EOF
cat >"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests" <<'EOF'
Apt::AutoRemove::SuggestsImportant "false";
EOF
# The archive's package lists and the .debs debootstrap fetched are not part of an image.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/bootstrap.log
echo "$SUITE" >"$rootfs/etc/hostname"

# /dev, /proc and /sys are provided by the container runtime.
tar -C "$rootfs" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -cf - . |
  docker import -c 'CMD ["bash"]' -c 'ENV LANG=C.UTF-8' -m "debootstrap --variant=minbase $SUITE $MIRROR" - "$IMAGE" >/dev/null
say "imported $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1 / 1e6}'))"
