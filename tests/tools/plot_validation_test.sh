#!/usr/bin/env bash
# tools/plot_validation.sh: writes a real PNG from history CSVs (accuracy and regression
# loss), and refuses bad input with exit 2 and one line naming the problem.
set -uo pipefail
script=${1:?usage: plot_validation_test.sh PATH/TO/plot_validation.sh}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failures=0
check() { if ! eval "$2"; then echo "FAIL: $1"; failures=$((failures + 1)); else echo "ok: $1"; fi; }

header=step,loss_before,loss_after,loss_after_ci95,accuracy_before,accuracy_after,accuracy_after_ci95
printf '%s\n500,1.63,0.71,0.08,0.20,0.75,0.025\n1000,1.63,0.66,0.08,0.20,0.77,0.024\n' "$header" > "$dir/a.csv"
printf '%s\n500,1.63,0.80,0.08,0.20,0.70,0.025\n1000,1.63,0.70,0.08,0.20,0.74,0.024\n' "$header" > "$dir/b.csv"
printf '%s\n1000,2.9,0.5,0.04,,,\n2000,2.9,0.4,0.03,,,\n' "$header" > "$dir/sin.csv"

# PNG signature, then the IHDR chunk's width and height (big-endian) at bytes 16..23.
png_size() { od -An -tx1 -j16 -N8 "$1" | tr -d ' \n'; }
is_png() { [[ $(od -An -tx1 -N8 "$1" | tr -d ' \n') == 89504e470d0a1a0a ]]; }

"$script" -o "$dir/acc.png" "MAML=$dir/a.csv" "FOMAML=$dir/b.csv" > "$dir/out" 2>&1
check "accuracy plot exits 0" "[[ $? == 0 ]]"
check "accuracy plot is a PNG" "is_png '$dir/acc.png'"
check "PNG is 1000x600" "[[ \$(png_size '$dir/acc.png') == 000003e800000258 ]]"

"$script" -o "$dir/loss.png" "K=5=$dir/sin.csv" > "$dir/out" 2>&1
check "regression CSV falls back to loss" "[[ $? == 0 ]] && is_png '$dir/loss.png'"

expect_error() {  # description, expected message fragment, args...
  local what=$1 fragment=$2; shift 2
  "$script" "$@" > "$dir/out" 2> "$dir/err"
  local rc=$?
  check "$what: exit 2" "[[ $rc == 2 ]]"
  check "$what: one line naming it" "[[ \$(wc -l < '$dir/err') == 1 ]] && grep -q -- '$fragment' '$dir/err'"
}
expect_error "missing output" "-o OUT.png" "a=$dir/a.csv"
expect_error "missing csv" "nope.csv: no such" -o "$dir/x.png" "a=$dir/nope.csv"
printf 'step,loss\n1,2\n' > "$dir/wrong.csv"
expect_error "wrong header" "header differs" -o "$dir/x.png" "a=$dir/wrong.csv"
printf '%s\n500,1.6,0.7\n' "$header" > "$dir/short.csv"
expect_error "malformed row" "line 2 is malformed" -o "$dir/x.png" "a=$dir/short.csv"
printf '%s\n' "$header" > "$dir/empty.csv"
expect_error "no points" "no validation points" -o "$dir/x.png" "a=$dir/empty.csv"
expect_error "accuracy of a regression run" "needs accuracies" -o "$dir/x.png" --metric accuracy "a=$dir/sin.csv"
expect_error "bad metric" "--metric must be" -o "$dir/x.png" --metric f1 "a=$dir/a.csv"
check "no PNG left by failed runs" "[[ ! -e '$dir/x.png' ]]"

((failures == 0)) || { echo "$failures check(s) failed"; exit 1; }
