#!/usr/bin/env bash
# Prints, one per line, the Debian packages that hold the shared libraries the given programs
# load. The runtime images install exactly these (plus OpenBLAS), so the list follows what
# the build links instead of a hand-kept copy. A library that no package owns (a LibTorch
# unpacked under /opt) is named on stderr: the Dockerfile copies it in separately.
#
#   runtime-packages.sh PROGRAM...
set -euo pipefail

mapfile -t libs < <(for program in "$@"; do ldd "$program"; done |
  awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u)
# dpkg knows a file by the path its package installed it under: with merged /usr that may be
# /lib/... or /usr/lib/..., and for a symlink managed elsewhere (the alternative
# libblas.so.3) only its target is owned. Ask about every candidate in one dpkg-query call,
# which reads the package database once.
candidates_of() {
  local path
  for path in "$1" "$(readlink -f "$1")"; do printf '%s\n' "$path" "/usr$path" "${path#/usr}"; done
}
mapfile -t candidates < <(for lib in "${libs[@]}"; do candidates_of "$lib"; done | sort -u)
# Lines are "package[, package...]: path"; package names may carry ":amd64".
owned=$(dpkg-query -S "${candidates[@]}" 2>/dev/null || true)
owned_paths=$(sed 's/^.*: //' <<<"$owned")
for lib in "${libs[@]}"; do
  grep -qxF -f <(candidates_of "$lib") <<<"$owned_paths" ||
    echo "runtime-packages: $lib belongs to no Debian package" >&2
done
sed 's/: .*//' <<<"$owned" | tr ',' '\n' | tr -d ' ' | sed '/^$/d' | sort -u
