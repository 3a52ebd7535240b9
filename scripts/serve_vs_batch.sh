#!/usr/bin/env bash
# r1 serve under load against r1 batch on the same model and concurrency, alternated
# (serve, batch, serve, batch): N streaming clients for SECONDS (scripts/serve_load.py), then
# r1 batch on 2N prompts of the same form. Prints one JSON line per run.
#   scripts/serve_vs_batch.sh MODEL [N=32] [SECONDS=60] [TOKENS=64] [extra flags for both, e.g. --template r1]
set -euo pipefail
R1=${R1:-$(dirname "$0")/../build/r1}
model=$1; n=${2:-32}; secs=${3:-60}; tok=${4:-64}; shift $(( $# < 4 ? $# : 4 ))
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
python3 -c "
import json
for k in range(2 * $n):
    print(json.dumps({'id': k, 'prompt': 'Client %d, request %d: explain step by step why %d is odd or even.' % (k % $n, k // $n, (k % $n) * 1000 + k // $n)}))" > "$work/prompts.jsonl"
port=$(python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
for round in 1 2; do
  "$R1" serve -m "$model" --port "$port" --ctx 512 --max-concurrent "$n" -q "$@" > /dev/null 2> "$work/serve.err" &
  pid=$!
  for _ in $(seq 1 300); do grep -q 'http://' "$work/serve.err" && break; sleep 0.2; done
  echo "serve $round: $(python3 "$(dirname "$0")/serve_load.py" --port "$port" --clients "$n" --seconds "$secs" --max-tokens "$tok")"
  kill -TERM $pid; wait $pid
  rm -f "$work/out.jsonl"
  echo "batch $round: $("$R1" batch -m "$model" "$work/prompts.jsonl" -o "$work/out.jsonl" --ctx 512 -n "$tok" \
    --max-concurrent "$n" --json-summary "$@" 2>/dev/null)"
done
