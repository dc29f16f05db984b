#!/usr/bin/env bash
# Runs fuzz targets one after another, each for SECONDS, at the lowest CPU priority, and
# prints one line per run: target, seconds, executions, crashes (from libFuzzer's final
# stats). New inputs go to fuzz/work/NAME (not committed; merge them into fuzz/corpus/NAME as
# README.md says); a crashing input goes to fuzz/artifacts/NAME/.
# Usage: fuzz/run.sh SECONDS [TARGET...]   (default: every target of fuzz/targets.txt)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < targets.txt
mkdir -p work/logs
for t in "${targets[@]}"; do
    mkdir -p "work/$t" "corpus/$t"
    log="work/logs/$t.log"
    start=$(date +%s)
    nice -n 19 cargo +nightly fuzz run "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1
    status=$?
    took=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    crashes=$(ls "artifacts/$t" 2>/dev/null | grep -c -E '^(crash|oom|timeout|leak)-')
    echo "$t seconds=$took executions=${execs:-?} exit=$status artifacts=$crashes"
done
