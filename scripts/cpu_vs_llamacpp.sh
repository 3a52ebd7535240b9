#!/usr/bin/env bash
# Issue 20's table: r1 against llama.cpp's llama-bench on this CPU, alternated r1 / llama.cpp,
# ROUNDS rounds, medians; r1 with its default kernels, with R1_PREFETCH=l2 and (where the CPU has
# AMX) with R1_AMX=1;
# then decode with another process keeping one core busy, 1 thread against all.
#   scripts/cpu_vs_llamacpp.sh LLAMA_BENCH GGUF_DIR [THREADS] [ROUNDS]
# GGUF_DIR holds qwen-1.5b-Q4_0.gguf, qwen-1.5b-Q8_0.gguf, qwen-7b-Q4_0.gguf (random weights at
# the real shapes: ../shared/bench/synth_direct.py). Build llama-bench outside this project
# (see issue 20 for the flags; with clang on AMX machines). Output: one line per run, then the table.
set -uo pipefail
LB=$1; G=$2; T=${3:-$(nproc)}; ROUNDS=${4:-3}
R1=${R1:-$(dirname "$0")/../build/r1}
log=$(mktemp); trap 'rm -f "$log"' EXIT
amx=no; grep -q -w amx_int8 /proc/cpuinfo && amx=yes
depth_flag=""; "$LB" --help 2>&1 | grep -q -- "--n-depth" && depth_flag="-d 4096"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) | threads $T | AMX $amx | llama-bench depth: ${depth_flag:-none}"

r1_run() {  # label env r1-bench-args
  local v
  v=$(env $2 "$R1" bench --synthetic $3 --device cpu --threads "$T" --repeat 1 --json 2>/dev/null |
      python3 -c "import json,sys; j=json.load(sys.stdin); print(j['prefill_tok_s'], j['decode_tok_s'])" 2>/dev/null)
  echo "$1 r1${2:+ $2}: $v" | tee -a "$log"
}
lb_run() {  # label gguf llama-bench-args
  local v
  v=$("$LB" -m "$G/$2" -t "$T" $3 -r 1 -o jsonl 2>/dev/null | python3 -c "
import json, sys
d = {}
for line in sys.stdin:
    j = json.loads(line); d['pp' if j['n_prompt'] else 'tg'] = j['avg_ts']
print(d.get('pp', 0), d.get('tg', 0))" 2>/dev/null)
  echo "$1 llama.cpp: $v" | tee -a "$log"
}
row() {  # label r1-args gguf llama-args
  for _ in $(seq 1 "$ROUNDS"); do
    r1_run "$1" "" "$2"
    [ $amx = yes ] && r1_run "$1" "R1_AMX=1" "$2"
    r1_run "$1" "R1_PREFETCH=l2" "$2"  # the L2 prefetch on every row (tuned on Zen 4: from 2048 columns)
    lb_run "$1" "$3" "$4"
  done
}
row "1.5B-q4" "qwen-1.5b --quant q4 -p 128 -n 64" qwen-1.5b-Q4_0.gguf "-p 128 -n 64"
row "1.5B-q8" "qwen-1.5b --quant q8 -p 128 -n 64" qwen-1.5b-Q8_0.gguf "-p 128 -n 64"
row "7B-q4" "qwen-7b --quant q4 -p 64 -n 32" qwen-7b-Q4_0.gguf "-p 64 -n 32"
for _ in $(seq 1 "$ROUNDS"); do
  r1_run "1.5B-q4@4096" "" "qwen-1.5b --quant q4 -p 0 -n 64 --depth 4096"
  [ -n "$depth_flag" ] && lb_run "1.5B-q4@4096" qwen-1.5b-Q4_0.gguf "-p 0 -n 64 $depth_flag"
done
# one core kept busy by another process: 1 thread against T threads, alternated
( while :; do :; done ) & busy=$!
for _ in $(seq 1 "$ROUNDS"); do
  for t in 1 "$T"; do
    v=$("$R1" bench --synthetic qwen-1.5b --quant q4 -p 16 -n 48 --device cpu --threads "$t" --json 2>/dev/null |
        python3 -c "import json,sys; print(json.load(sys.stdin)['decode_tok_s'])" 2>/dev/null)
    echo "busy-core threads=$t r1: 0 $v" | tee -a "$log"
  done
done
kill $busy
python3 - "$log" <<'EOF'
import collections, statistics, sys
runs = collections.defaultdict(lambda: ([], []))
for line in open(sys.argv[1]):
    key, _, vals = line.rpartition(": ")
    try:
        pp, tg = (float(x) for x in vals.split())
    except ValueError:
        continue
    runs[key][0].append(pp); runs[key][1].append(tg)
print("\n| run | prefill tok/s (median) | decode tok/s (median) |\n|---|---|---|")
for key, (pp, tg) in runs.items():
    print("| %s | %.1f | %.1f |" % (key, statistics.median(pp), statistics.median(tg)))
EOF
