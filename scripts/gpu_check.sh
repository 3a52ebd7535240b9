#!/usr/bin/env bash
# On the GPU machine, from the repository root, after `make bundle` here: the CUDA parity and
# model tests, r1 run on cuda against cpu, the benchmark tables and the per-kernel profile.
# Logs go to $OUT (or /tmp/r1-gpu); the last lines printed are a summary. B: where r1 and
# r1_cuda_tests are (default bundle/).
#   scripts/gpu_check.sh MODE [ARGS]
#     unpack                   bundle and fixtures carried as build-carry/*.tar.xz (the device
#                              call takes 64 MiB: see scripts/gpu_carry.sh)
#     info                     the GPU, driver and CPU (AMX?)
#     tests [FILTER]           r1_cuda_tests (every kernel against the CPU reference, both kernel sets)
#     run                      fixture models: r1 run greedy ids on cuda == cpu (each format, both kernel sets),
#                              and seeded sampled ids (q4, q8: the fused set picks on the device)
#     bench "PRESETS" "QUANTS" "KERNELS" [EXTRA]   r1 bench --json, alternating the kernel sets
#                              (legacy, fused, base = the binary carried as bundle/r1-base)
#     table                    the bench.jsonl so far as a table
#     batch PRESET QUANT       aggregate decode of 1, 8, 32 and 128 sequences decoded together
#     serve                    r1 serve --device cuda: a greedy chat request equals r1 run --json on cuda
#     chatkv                   chat /save on one device, /load on the other (f16 and q8 caches)
#     scorekv                  r1 score --kv q8 --kl-base-kv f16: the q8 cache's cost, on cpu and cuda
#     session1 | session2      what one device call runs (see the bottom of this file)
set -uo pipefail
OUT=${OUT:-/tmp/r1-gpu}; mkdir -p "$OUT"
export R1_FIXTURES_DIR=$PWD/tests/fixtures
B=${B:-bundle}

unpack() {
  for f in build-carry/*.tar.xz; do
    [ -f "$f" ] || continue
    tar xJf "$f" 2>/dev/null || python3 -c "import lzma, sys, tarfile; tarfile.open(fileobj=lzma.open(sys.argv[1])).extractall()" "$f"
  done
  ls -la $B tests/fixtures/models 2>&1 | head -20
}

info() {
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv,noheader
  grep -m1 "model name" /proc/cpuinfo; nproc; grep -o -w -E "amx_(int8|bf16|tile)|avx512_vnni" /proc/cpuinfo | sort -u | tr '\n' ' '; echo
}

tests() {
  timeout 300 $B/r1_cuda_tests ${1:-} --durations yes > "$OUT/cuda_tests.log" 2>&1
  echo "r1_cuda_tests ${1:-}: exit $?"
  grep -E "^(All tests|test cases|assertions)|FAILED|failed|REQUIRE|CHECK\(|with expansion|seed|error" "$OUT/cuda_tests.log" | head -60
}

run() {
  : > "$OUT/run.log"
  for m in ${R1_CUDA_FIXTURES:-tiny-qwen2 tiny-llama3 tiny-qwen2-py}; do
    for q in f32 bf16 q4 q5 q8; do
      $B/r1 pack tests/fixtures/models/$m -o /tmp/$m-$q.r1m --quant $q -q || { echo "pack $m $q failed"; continue; }
      a=$($B/r1 run -m /tmp/$m-$q.r1m --raw --temp 0 -n 48 -p 'def fib(n):' --device cpu --print-ids 2>>"$OUT/run.log")
      for k in legacy fused; do
        b=$(R1_CUDA_KERNELS=$k $B/r1 run -m /tmp/$m-$q.r1m --raw --temp 0 -n 48 -p 'def fib(n):' --device cuda --print-ids 2>>"$OUT/run.log")
        if [ "$a" == "$b" ]; then echo "run $m $q $k: cuda == cpu"; else echo "run $m $q $k: DIFFERENT"; echo "  cpu:  $a"; echo "  cuda: $b"; fi
      done
      case $q in q4|q8)  # seeded sampling: the host's sampler (legacy) and the device's (fused) against the CPU
        local smp=(--raw --temp 0.8 --top-k 40 --seed 7 -n 48 --on-loop off -p 'def fib(n):' --print-ids)
        a=$($B/r1 run -m /tmp/$m-$q.r1m "${smp[@]}" --device cpu 2>>"$OUT/run.log")
        for k in legacy fused; do
          b=$(R1_CUDA_KERNELS=$k $B/r1 run -m /tmp/$m-$q.r1m "${smp[@]}" --device cuda 2>>"$OUT/run.log")
          if [ "$a" == "$b" ]; then echo "run $m $q $k sampled: cuda == cpu"; else echo "run $m $q $k sampled: DIFFERENT"; echo "  cpu:  $a"; echo "  cuda: $b"; fi
        done ;;
      esac
      case $q in q4|q5|q8)  # the q8 cache: fused kernels on the GPU
        a=$($B/r1 run -m /tmp/$m-$q.r1m --raw --temp 0 -n 48 -p 'def fib(n):' --device cpu --kv q8 --print-ids 2>>"$OUT/run.log")
        b=$(R1_CUDA_KERNELS=fused $B/r1 run -m /tmp/$m-$q.r1m --raw --temp 0 -n 48 -p 'def fib(n):' --device cuda --kv q8 --print-ids 2>>"$OUT/run.log")
        if [ "$a" == "$b" ]; then echo "run $m $q fused kv q8: cuda == cpu"; else echo "run $m $q fused kv q8: DIFFERENT"; echo "  cpu:  $a"; echo "  cuda: $b"; fi ;;
      esac
    done
  done 2>&1 | tee -a "$OUT/run.log" | grep -E "DIFFERENT|cpu:|cuda:|failed" ; grep -c "cuda == cpu" "$OUT/run.log" | sed 's/^/runs equal: /'
}

# bench "PRESETS" "QUANTS" "KERNELS" [EXTRA...]: one r1 bench per preset, quant and kernel set, the
# kernel sets alternated (A, B, A, B with KERNELS="legacy fused legacy fused")
bench() {
  local presets=$1 quants=$2 kernels=$3; shift 3
  for p in $presets; do for q in $quants; do for k in $kernels; do
    local bin=$B/r1 env=legacy args=("$@")
    case $k in base) bin=$B/r1-base; args=("${args[@]/--profile}") ;; *) env=$k ;; esac
    local pn=(-p 512 -n 128)  # unless EXTRA says otherwise
    [[ " $* " == *" -p "* ]] && pn=()
    R1_CUDA_KERNELS=$env timeout 240 $bin bench --synthetic $p --quant $q --device cuda ${pn[@]+"${pn[@]}"} --repeat 3 ${args[@]+"${args[@]}"} --json \
      2>>"$OUT/bench.err" | sed "s/^{/{\"run\":\"$k\",/" | tee -a "$OUT/bench.jsonl" | cut -c1-200
  done; done; done
}

table() {
  python3 - "$OUT/bench.jsonl" <<'PY'
import json, sys
print(f"{'model':20} {'run':6} {'quant':5} {'depth':>5} {'batch':>5} {'prefill':>8} {'decode':>8} {'GB/tok':>7} {'%copy':>6} {'copy GB/s':>9} {'read GB/s':>9}")
for line in open(sys.argv[1]):
    try: j = json.loads(line)
    except Exception: continue
    print(f"{j['model']:20} {j.get('run','?'):6} {j['quant']:5} {j['depth']:5d} {j['batch']:5d} {j['prefill_tok_s']:8.0f} {j['decode_tok_s']:8.1f} "
          f"{j['bytes_per_token']/1e9:7.3f} {100*j['bw_fraction']:6.1f} {j.get('copy_bw_gb_s',0):9.0f} {j['read_bw_after_gb_s']:9.0f}")
    for e in j.get('profile', []):
        print(f"    {e['kind']:10} {e['launches_per_token']:5.1f}/tok {e['us_per_token']:8.1f} us {e['bytes_per_token']/1e6:9.2f} MB {e.get('gb_s',0):7.0f} GB/s {100*e.get('bw_fraction',0):5.1f}%")
    if 'step_us' in j: print(f"    kernels {j['profile_kernels_us']:.1f} us of a {j['step_us']:.1f} us step")
PY
}

batch() {
  local preset=${1:-qwen-1.5b} quant=${2:-q4} k=${3:-legacy}
  for n in 1 8 32 128; do
    R1_CUDA_KERNELS=$k timeout 240 $B/r1 bench --synthetic $preset --quant $quant --device cuda -p 128 -n 128 --batch $n --repeat 2 --json 2>>"$OUT/bench.err" \
      | sed "s/^{/{\"run\":\"$k\",/" | tee -a "$OUT/bench.jsonl" | cut -c1-160
  done
}

serve() {
  local m=/tmp/tiny-qwen2-q8.r1m
  [ -f $m ] || $B/r1 pack tests/fixtures/models/tiny-qwen2 -o $m --quant q8 -q
  for k in legacy fused; do
    R1_CUDA_KERNELS=$k $B/r1 serve -m $m --device cuda --port 18123 --temp 0 > /dev/null 2> "$OUT/serve-$k.log" &
    local pid=$!; sleep 3
    want=$(R1_CUDA_KERNELS=$k $B/r1 run -m $m --device cuda --temp 0 -n 40 --think-budget 12 -p "What is 2+2?" --json -q 2>>"$OUT/serve-$k.log")
    got=$(python3 -c "
import json, urllib.request
b = json.dumps({'messages': [{'role': 'user', 'content': 'What is 2+2?'}], 'max_tokens': 40, 'think_budget': 12}).encode()
r = json.load(urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:18123/v1/chat/completions', b, {'Content-Type': 'application/json'}), timeout=60))
m = r['choices'][0]['message']; print(json.dumps([m.get('reasoning_content', ''), m['content']]))" 2>&1)
    w=$(echo "$want" | python3 -c "import json,sys; j=json.load(sys.stdin); print(json.dumps([j['reasoning'], j['answer']]))" 2>&1)
    if [ "$got" == "$w" ]; then echo "serve $k: == r1 run on cuda"; else echo "serve $k: DIFFERENT"; echo "  run:   $w"; echo "  serve: $got"; fi
    kill -TERM $pid; wait $pid; echo "serve $k: exit $?"
  done
}

# Chat /save and /load across devices: a snapshot saved on one device loads on the other. Per KV
# format and kernel set: the GPU's logits after loading its own snapshot equal those it saved with
# (R1_CHAT_DUMP_LOGITS, bit for bit), and the next turn's greedy answer is the same whichever
# device saved the first turn and whichever answers the second.
chatkv() {
  local m=/tmp/tiny-qwen2-py-q8.r1m d=/tmp/chatkv
  [ -f $m ] || $B/r1 pack tests/fixtures/models/tiny-qwen2-py -o $m --quant q8 -q
  mkdir -p $d
  for c in "legacy f16" "fused f16" "fused q8"; do
    set -- $c
    local k=$1 kv=$2 f=(--temp 0 -n 24 --think-budget 8 --on-loop off -q --kv $2)
    chat() {  # chat DEVICE LOGITS_FILE INPUT...
      local dev=$1 lg=$2; shift 2
      printf '%s\n' "$@" | R1_CUDA_KERNELS=$k R1_CHAT_DUMP_LOGITS=$lg timeout 60 $B/r1 chat -m $m --device $dev "${f[@]}" 2>>"$OUT/chatkv.log"
    }
    for dev in cpu cuda; do
      chat $dev $d/$dev.before "def fib(n):" "/save $d/$dev.r1s" > /dev/null
      chat $dev $d/$dev.after "/load $d/$dev.r1s" > /dev/null
      if cmp -s $d/$dev.before $d/$dev.after; then echo "chatkv $k $kv $dev: logits after /load == before /save"
      else echo "chatkv $k $kv $dev: logits after /load DIFFERENT"; fi
    done
    local ref="" got
    for pair in "cpu cpu" "cuda cuda" "cuda cpu" "cpu cuda"; do
      set -- $pair  # saved on $1, answered on $2
      got=$(chat $2 /dev/null "/load $d/$1.r1s" "for i in range(10):" | tr '\n' ' ')
      [ -z "$ref" ] && ref=$got
      if [ "$got" == "$ref" ]; then echo "chatkv $k $kv saved on $1, answered on $2: == cpu/cpu"
      else echo "chatkv $k $kv saved on $1, answered on $2: DIFFERENT"; echo "  cpu/cpu: $ref"; echo "  this:    $got"; fi
    done
  done
}

# What the q8 cache costs on the GPU (issue 22): r1 score with the model itself as the reference,
# --kv q8 against an f16 cache, on cuda (fused kernels: the reference beside it on the GPU) and on cpu
scorekv() {
  local m=/tmp/tiny-qwen2-py-q8.r1m
  [ -f $m ] || $B/r1 pack tests/fixtures/models/tiny-qwen2-py -o $m --quant q8 -q
  for d in cpu cuda; do
    R1_CUDA_KERNELS=fused timeout 120 $B/r1 score -m $m --text tests/fixtures/heldout.py.txt --ctx 256 --device $d \
      --kv q8 --kl-base $m --kl-base-kv f16 --json 2>>"$OUT/score.err" | sed "s/^{/{\"device\":\"$d\",/" | tee -a "$OUT/score.jsonl" | cut -c1-300
  done
}

case "${1:-tests}" in
  unpack) unpack ;;
  info) info ;;
  tests) tests "${2:-}" ;;
  run) run ;;
  bench) shift; bench "$@" ;;
  table) table ;;
  batch) shift; batch "$@" ;;
  serve) serve ;;
  chatkv) chatkv ;;
  scorekv) scorekv ;;
  session1)  # first look: correctness of both kernel sets, then legacy / fused / the old binary side by side
    unpack > "$OUT/unpack.log" 2>&1; info | tee "$OUT/info.txt"
    tests "[fused],[model]"
    run
    serve
    chatkv
    scorekv
    bench "qwen-1.5b llama-8b" "q4" "base legacy fused legacy fused" --profile
    bench "llama-8b" "q8" "legacy fused" --profile
    bench "qwen-32b llama-70b" "q4" "fused"
    bench "llama-8b" "q4" "legacy fused" --depth 8192 --profile
    bench "llama-8b" "q4" "fused" --depth 32768 -p 0 -n 64
    bench "llama-8b" "q4" "fused" --depth 32768 -p 0 -n 64 --kv q8
    for k in legacy fused; do for n in 8 128; do
      R1_CUDA_KERNELS=$k timeout 120 $B/r1 bench --synthetic qwen-1.5b --quant q4 --device cuda -p 128 -n 64 --batch $n --repeat 2 --json 2>>"$OUT/bench.err" \
        | sed "s/^{/{\"run\":\"$k\",/" >> "$OUT/bench.jsonl"
    done; done
    table ;;
  session2)  # the full table with the default kernels
    unpack > "$OUT/unpack.log" 2>&1; info | tee "$OUT/info.txt"
    tests
    bench "qwen-1.5b qwen-7b llama-8b qwen-14b qwen-32b llama-70b" "q4 q8" "fused" --profile
    bench "llama-8b" "q4" "fused" --depth 8192 --profile
    table ;;
esac
