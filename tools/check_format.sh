#!/usr/bin/env bash
# Fails, naming them, when C++ files tracked by git differ from what clang-format makes of
# them under the repository's .clang-format. CI runs it as the ctest test format_check;
# `make format` rewrites the files in place.
#
# Usage: tools/check_format.sh [source dir]   (default: the checkout holding this script)
# Environment: CLANG_FORMAT (default clang-format-14: another version formats differently).
#
# The file list comes from git so that build trees, generated code and untracked scratch
# files are never checked; without git, or outside a checkout, the check fails rather than
# silently checking nothing.
set -euo pipefail

src=${1:-$(cd "$(dirname "$0")/.." && pwd)}
clang_format=${CLANG_FORMAT:-clang-format-14}

fail() {
  echo "check_format: $*" >&2
  exit 1
}

command -v git >/dev/null || fail "git not found: it lists the files to check (apt-get install git)"
command -v "$clang_format" >/dev/null ||
  fail "$clang_format not found (deploy/install-deps.sh installs clang-format-14)"
git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1 ||
  fail "$src is not a git checkout: cannot list the tracked files"

cd "$src"
files=()
while IFS= read -r -d '' f; do
  # A tracked file deleted in the working tree is not ours to check.
  [[ -f $f ]] && files+=("$f")
done < <(git ls-files -z -- '*.h' '*.cc')
((${#files[@]})) || fail "git ls-files found no *.h or *.cc files in $src"

# One clang-format process for every file: it goes on after a file that fails and exits
# non-zero if any did, printing "<file>:<line>:<col>: error: code should be clang-formatted".
if output=$("$clang_format" --dry-run -Werror "${files[@]}" 2>&1); then
  echo "check_format: ${#files[@]} files formatted as .clang-format says"
  exit 0
fi

mapfile -t bad < <(sed -n 's/^\(.*\):[0-9]*:[0-9]*: error: code should be clang-formatted.*/\1/p' \
  <<<"$output" | sort -u)
if ((${#bad[@]} == 0)); then
  # clang-format failed for another reason (a bad .clang-format, an unreadable file).
  echo "$output" >&2
  fail "$clang_format failed without naming a badly formatted file (its output is above)"
fi

echo "check_format: ${#bad[@]} of ${#files[@]} files are not formatted as .clang-format says:"
printf '  %s\n' "${bad[@]}"
echo
echo "What clang-format would change (first 30 lines of each diff):"
for f in "${bad[@]}"; do
  diff -u --label "$f" --label "$f (clang-formatted)" "$f" <("$clang_format" "$f") | head -n 30 || true
done
echo
echo "Fix with: make format   (or: $clang_format -i <file>...)"
exit 1
