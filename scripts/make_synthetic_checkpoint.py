#!/usr/bin/env python3
"""Write a synthetic Hugging Face checkpoint (random BF16 weights) for packing tests and
memory measurements, e.g. one with the shapes of DeepSeek-R1-Distill-Qwen-7B:

    scripts/make_synthetic_checkpoint.py /tmp/syn7b --preset qwen7b

Writes config.json, model-0000k-of-0000n.safetensors shards (about --shard-gb each), the
model.safetensors.index.json, and tokenizer files copied from a fixture model. Weights are
streamed in chunks from a fixed pool of random values, so the script stays small in memory
(tens of MB) whatever the model size. Only numpy is needed.
"""
import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np

PRESETS = {
    # DeepSeek-R1-Distill-Qwen-7B (Qwen2.5-Math-7B shapes)
    "qwen7b": dict(arch="qwen2", hidden=3584, ffn=18944, layers=28, heads=28, kv_heads=4,
                   head_dim=128, vocab=152064, bias=True),
    # the same path at a tiny size
    "small": dict(arch="qwen2", hidden=256, ffn=512, layers=2, heads=4, kv_heads=2,
                  head_dim=64, vocab=8256, bias=True),
}

CHUNK = 8 << 20  # elements per write
POOL = 16 << 20  # random values drawn once, then sliced


def tensor_list(a):
    h, ff, q, kv, v = a.hidden, a.ffn, a.heads * a.head_dim, a.kv_heads * a.head_dim, a.vocab
    t = [("model.embed_tokens.weight", (v, h))]
    for l in range(a.layers):
        p = f"model.layers.{l}."
        t.append((p + "input_layernorm.weight", (h,)))
        t.append((p + "self_attn.q_proj.weight", (q, h)))
        t.append((p + "self_attn.k_proj.weight", (kv, h)))
        t.append((p + "self_attn.v_proj.weight", (kv, h)))
        if a.bias:
            t.append((p + "self_attn.q_proj.bias", (q,)))
            t.append((p + "self_attn.k_proj.bias", (kv,)))
            t.append((p + "self_attn.v_proj.bias", (kv,)))
        t.append((p + "self_attn.o_proj.weight", (h, q)))
        t.append((p + "post_attention_layernorm.weight", (h,)))
        t.append((p + "mlp.gate_proj.weight", (ff, h)))
        t.append((p + "mlp.up_proj.weight", (ff, h)))
        t.append((p + "mlp.down_proj.weight", (h, ff)))
    t.append(("model.norm.weight", (h,)))
    t.append(("lm_head.weight", (v, h)))
    return t


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="output directory (created)")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    for k in ("hidden", "ffn", "layers", "heads", "kv_heads", "head_dim", "vocab"):
        ap.add_argument("--" + k.replace("_", "-"), type=int, help="override the preset")
    ap.add_argument("--arch", choices=["qwen2", "llama"])
    ap.add_argument("--no-bias", action="store_true", help="no q/k/v bias (llama only)")
    ap.add_argument("--shard-gb", type=float, default=4.0, help="approximate shard size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--std", type=float, default=0.02, help="weight standard deviation")
    ap.add_argument("--tokenizer-from", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                              "..", "tests", "fixtures", "models", "tiny-qwen2"))
    a = ap.parse_args()
    p = dict(PRESETS[a.preset])
    for k in ("hidden", "ffn", "layers", "heads", "kv_heads", "head_dim", "vocab", "arch"):
        if getattr(a, k) is not None:
            p[k] = getattr(a, k)
    if a.no_bias:
        p["bias"] = False
    if p["arch"] == "qwen2":
        p["bias"] = True
    args = argparse.Namespace(**p)

    os.makedirs(a.out, exist_ok=True)
    for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        src = os.path.join(a.tokenizer_from, f)
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(a.out, f))

    qwen = args.arch == "qwen2"
    cfg = {
        "architectures": ["Qwen2ForCausalLM" if qwen else "LlamaForCausalLM"],
        "model_type": args.arch,
        "hidden_size": args.hidden,
        "intermediate_size": args.ffn,
        "num_hidden_layers": args.layers,
        "num_attention_heads": args.heads,
        "num_key_value_heads": args.kv_heads,
        "head_dim": args.head_dim,
        "vocab_size": args.vocab,
        "max_position_embeddings": 131072 if qwen else 8192,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "use_sliding_window": False,
        "bos_token_id": 8195,
        "eos_token_id": 8192,
        "torch_dtype": "bfloat16",
    }
    if not qwen:
        cfg["attention_bias"] = args.bias
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)

    # Split tensors into shards of about shard-gb.
    tensors = tensor_list(args)
    limit = int(a.shard_gb * (1 << 30))
    shards, cur, cur_bytes = [], [], 0
    for name, shape in tensors:
        b = numel(shape) * 2
        if cur and cur_bytes + b > limit:
            shards.append(cur)
            cur, cur_bytes = [], 0
        cur.append((name, shape))
        cur_bytes += b
    shards.append(cur)

    rng = np.random.default_rng(a.seed)
    pool = (rng.standard_normal(POOL, dtype=np.float32) * np.float32(a.std)).view(np.uint32)
    pool = ((pool + 0x7FFF + ((pool >> 16) & 1)) >> 16).astype(np.uint16)  # round to bf16
    ones = np.full(CHUNK, 0x3F80, dtype=np.uint16)  # bf16 1.0, for norm weights

    weight_map, total = {}, 0
    n = len(shards)
    for k, shard in enumerate(shards):
        fname = f"model-{k + 1:05d}-of-{n:05d}.safetensors"
        header, off = {"__metadata__": {"format": "pt"}}, 0
        for name, shape in shard:
            b = numel(shape) * 2
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + b]}
            off += b
            weight_map[name] = fname
        hjs = json.dumps(header, separators=(",", ":")).encode()
        hjs += b" " * ((8 - (8 + len(hjs)) % 8) % 8)
        with open(os.path.join(a.out, fname), "wb") as f:
            f.write(struct.pack("<Q", len(hjs)))
            f.write(hjs)
            for name, shape in shard:
                left = numel(shape)
                norm = len(shape) == 1 and "norm" in name
                while left > 0:
                    m = min(left, CHUNK)
                    if norm:
                        f.write(ones[:m].tobytes())
                    else:
                        start = int(rng.integers(0, POOL - m + 1))
                        f.write(pool[start:start + m].tobytes())
                    left -= m
        total += off
        print(f"{fname}: {len(shard)} tensors, {off / 1e9:.2f} GB", file=sys.stderr)

    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    print(f"{a.out}: {len(tensors)} tensors, {total / 1e9:.2f} GB in {n} shards", file=sys.stderr)


if __name__ == "__main__":
    main()
