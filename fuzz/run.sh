#!/usr/bin/env bash
# Runs every fuzzer for a time budget each, from seed corpora made from the fixtures.
#   fuzz/run.sh BUILD_DIR [SECONDS_EACH]
# Fails if any fuzzer finds a crash, a sanitizer error, a leak or an unexpected exception.
set -euo pipefail
build=$1
secs=${2:-20}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$build/r1_fuzz_seeds" "$work/seeds"
status=0
for bin in "$build"/fuzz_*; do
  name=$(basename "$bin")
  case $name in
    fuzz_r1m) seeds=r1m ;;
    fuzz_safetensors) seeds=safetensors ;;
    fuzz_config) seeds=config ;;
    fuzz_tokenizer_json) seeds=tokenizer_json ;;
    fuzz_tokenize) seeds=tokenize ;;
    fuzz_template) seeds=template ;;
    fuzz_batch_input) seeds=batch_input ;;
    *) seeds=${name#fuzz_} ;;
  esac
  mkdir -p "$work/corpus/$name" "$work/seeds/$seeds"
  if "$bin" -max_total_time="$secs" -max_len=262144 -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
      -print_final_stats=1 -artifact_prefix="$work/" "$work/corpus/$name" "$work/seeds/$seeds" \
      > "$work/$name.log" 2>&1; then
    echo "fuzz: $name ok ($(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$name.log" | grep -o '[0-9]*$') executions in ${secs}s)"
  else
    echo "fuzz: $name FAILED"; tail -40 "$work/$name.log"; ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* 2>/dev/null || true
    status=1
  fi
done
exit $status
