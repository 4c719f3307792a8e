#!/usr/bin/env bash
# Plots meta-validation curves (the CSV of `metactl history JOB`) into one PNG, one line
# per run with its 95% confidence band, using gnuplot (Debian's gnuplot-nox).
#
#   tools/plot_validation.sh -o OUT.png [--title TEXT] [--metric accuracy|loss] LABEL=HISTORY.csv ...
#
# LABEL ends at the last "=" (labels may contain "=", file names may not).
#
# --metric defaults to accuracy when every CSV has accuracies, else loss (regression).
# Exit codes: 0 written, 2 bad arguments or input (one line on stderr), 1 gnuplot failed.
set -euo pipefail

fail() { echo "plot_validation: $*" >&2; exit 2; }

out="" title="meta-validation" metric=""
runs=()
while (($#)); do
  case $1 in
    -o|--output) (($# >= 2)) || fail "$1 needs a file name"; out=$2; shift 2 ;;
    --title) (($# >= 2)) || fail "--title needs a value"; title=$2; shift 2 ;;
    --metric) (($# >= 2)) || fail "--metric needs a value"; metric=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) fail "unknown flag $1" ;;
    *=*) runs+=("$1"); shift ;;
    *) fail "expected LABEL=HISTORY.csv, got \"$1\"" ;;
  esac
done
[[ -n $out ]] || fail "-o OUT.png is required"
((${#runs[@]})) || fail "give at least one LABEL=HISTORY.csv"
[[ -z $metric || $metric == accuracy || $metric == loss ]] ||
  fail "--metric must be accuracy or loss (got \"$metric\")"
command -v gnuplot > /dev/null || fail "gnuplot not found (install gnuplot-nox: deploy/install-deps.sh)"

readonly header="step,loss_before,loss_after,loss_after_ci95,accuracy_before,accuracy_after,accuracy_after_ci95"
all_accuracy=1
for run in "${runs[@]}"; do
  label=${run%=*} csv=${run##*=}
  [[ -n $label ]] || fail "empty label in \"$run\""
  [[ -r $csv ]] || fail "$csv: no such readable file"
  [[ $(head -n 1 "$csv") == "$header" ]] || fail "$csv: not a 'metactl history' CSV (header differs)"
  rows=$(tail -n +2 "$csv" | grep -c . || true)
  ((rows > 0)) || fail "$csv: no validation points"
  bad=$(tail -n +2 "$csv" | awk -F, 'NF != 7 || $1 !~ /^[0-9]+$/ {print NR + 1; exit}')
  [[ -z $bad ]] || fail "$csv: line $bad is malformed"
  if tail -n +2 "$csv" | awk -F, '$6 == "" {found = 1} END {exit !found}'; then all_accuracy=0; fi
done
if [[ -z $metric ]]; then metric=$([[ $all_accuracy == 1 ]] && echo accuracy || echo loss); fi
[[ $metric == loss || $all_accuracy == 1 ]] || fail "--metric accuracy needs accuracies in every CSV"

if [[ $metric == accuracy ]]; then
  ylabel="accuracy after adaptation (%)" y='(100*$6)' lo='(100*($6-$7))' hi='(100*($6+$7))'
  key="bottom right"  # curves rise: the lower right corner stays empty
else
  ylabel="query loss after adaptation" y='($3)' lo='($3-$4)' hi='($3+$4)'
  key="top right"
fi
script=$(mktemp)
trap 'rm -f "$script"' EXIT
{
  echo "set terminal pngcairo size 1000,600 font 'sans,11'"
  echo "set output '${out//\'/\'\'}'"
  echo "set datafile separator ','"
  echo "set title '${title//\'/\'\'}'"
  echo "set xlabel 'meta-training step'"
  echo "set ylabel '$ylabel'"
  echo "set grid"
  echo "set key $key box opaque"
  echo "set style fill transparent solid 0.2 noborder"
  plots=()
  i=1
  for run in "${runs[@]}"; do
    label=${run%=*} csv=${run##*=}
    plots+=("'${csv//\'/\'\'}' skip 1 using 1:$lo:$hi with filledcurves lc $i notitle")
    plots+=("'${csv//\'/\'\'}' skip 1 using 1:$y with linespoints lc $i pt 7 ps 0.6 lw 2 title '${label//\'/\'\'}'")
    i=$((i + 1))
  done
  (IFS=','; echo "plot ${plots[*]}")
} > "$script"
gnuplot "$script" || { echo "plot_validation: gnuplot failed" >&2; exit 1; }
echo "wrote $out"
