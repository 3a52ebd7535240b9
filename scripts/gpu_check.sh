#!/usr/bin/env bash
# On the GPU machine, from the repository root, after `make bundle` here: the CUDA parity and
# model tests, r1 run on cuda against cpu, and the benchmark table. Logs go to $OUT (or /tmp).
#   scripts/gpu_check.sh [tests] [run] [bench PRESETS QUANTS] [depth] [batch PRESET QUANT]
set -uo pipefail
OUT=${OUT:-/tmp/r1-gpu}; mkdir -p "$OUT"
export R1_FIXTURES_DIR=$PWD/tests/fixtures
B=bundle
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader
what=${1:-tests}
case "$what" in
  tests)
    $B/r1_cuda_tests --durations yes 2>&1 | tee "$OUT/cuda_tests.log" | tail -40 ;;
  run)
    for m in ${R1_CUDA_FIXTURES:-tiny-qwen2 tiny-llama3 tiny-qwen2-py}; do
      for q in f32 bf16 q4; do
        $B/r1 pack tests/fixtures/models/$m -o /tmp/$m-$q.r1m --quant $q -q || exit 1
        a=$($B/r1 run -m /tmp/$m-$q.r1m --raw --temp 0 -n 48 -p 'def fib(n):' --device cpu --print-ids)
        b=$($B/r1 run -m /tmp/$m-$q.r1m --raw --temp 0 -n 48 -p 'def fib(n):' --device cuda --print-ids)
        if [ "$a" == "$b" ]; then echo "run $m $q: cuda == cpu"; else echo "run $m $q: DIFFERENT"; echo "cpu: $a"; echo "cuda: $b"; fi
      done
    done ;;
  batch)
    # issue 8's table: 128-token prompts, 128 new tokens each, 1/8/32/128 sequences together
    preset=${2:-qwen-1.5b}; quant=${3:-q4}
    for n in 1 8 32 128; do
      $B/r1 bench --synthetic $preset --quant $quant --device cuda -p 128 -n 128 --batch $n --repeat 2 --json 2>&1 | tee -a "$OUT/batch.jsonl" | tail -1
    done
    python3 - "$OUT/batch.jsonl" <<'PY'
import json, sys
rows = [j for j in (json.loads(l) for l in open(sys.argv[1]) if l.startswith('{'))]
one = next((j['decode_tok_s'] for j in rows if j['batch'] == 1), 0)
print(f"{'sequences':>9} {'decode tok/s':>12} {'x one':>6} {'prefill tok/s':>13}")
for j in rows:
    print(f"{j['batch']:9d} {j['decode_tok_s']:12.0f} {j['decode_tok_s'] / one if one else 0:6.1f} {j['prefill_tok_s']:13.0f}")
PY
    ;;
  bench)
    presets=${2:-"qwen-1.5b qwen-7b llama-8b"}; quants=${3:-"q4 q8"}; extra=${4:-}
    for p in $presets; do for q in $quants; do
      $B/r1 bench --synthetic $p --quant $q --device cuda -p 512 -n 128 --repeat 3 $extra --json 2>&1 | tee -a "$OUT/bench.jsonl" | tail -1
    done; done
    python3 - "$OUT/bench.jsonl" <<'PY'
import json, sys
print(f"{'model':18} {'quant':5} {'depth':>5} {'prefill':>9} {'decode':>8} {'GB/tok':>7} {'%bw':>5} {'bw GB/s':>8}")
for line in open(sys.argv[1]):
    try: j = json.loads(line)
    except Exception: continue
    print(f"{j['model']:18} {j['quant']:5} {j['depth']:5d} {j['prefill_tok_s']:9.0f} {j['decode_tok_s']:8.1f} {j['bytes_per_token']/1e9:7.3f} {100*j['bw_fraction']:5.1f} {j['read_bw_gb_s']:8.0f}")
PY
    ;;
esac
