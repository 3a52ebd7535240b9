#!/usr/bin/env python3
"""Dev script: GGUF fixtures for tests/test_gguf.cpp, written the way llama.cpp's
convert_hf_to_gguf.py writes them (same tensor names and metadata keys, Llama q/k rows permuted
for interleaved RoPE, llama3 scaling as a rope_freqs tensor, tokenizer as tokenizer.ggml.*).

Not run by CI or the build; its outputs are committed under tests/fixtures/gguf/. Needs the
`gguf` and `numpy` packages from PyPI, e.g.
    python3 -m venv /tmp/ggufvenv && /tmp/ggufvenv/bin/pip install gguf numpy
    /tmp/ggufvenv/bin/python scripts/make_gguf_fixtures.py
and the `zstd` command (the f32 files are stored compressed: their low 16 bits are zero).

Outputs:
  tiny-llama3-f32.gguf.zst, tiny-qwen2-f32.gguf.zst     exact copies of the BF16 weights
  tiny-qwen2-q8_0.gguf                                   Q8_0 matrices (convert --outtype q8_0)
  tiny-llama3-q4_0-0000{1,2}-of-00002.gguf               pure Q4_0, split in two parts
  dequant.bin     per ggml type: raw blocks and the gguf package's numpy dequantization
"""
import json
import os
import struct
import subprocess
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf import quants

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "tests", "fixtures", "models")
OUT = os.path.join(ROOT, "tests", "fixtures", "gguf")


def read_safetensors(d):
    idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))
    out = {}
    for fname in sorted(set(idx["weight_map"].values())):
        raw = open(os.path.join(d, fname), "rb").read()
        (hlen,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + hlen])
        base = 8 + hlen
        for name, info in header.items():
            if name == "__metadata__":
                continue
            assert info["dtype"] == "BF16", info["dtype"]
            b, e = info["data_offsets"]
            u16 = np.frombuffer(raw[base + b:base + e], dtype="<u2").astype(np.uint32) << 16
            out[name] = u16.view(np.float32).reshape(info["shape"])
    return out


def permute(w, n_head):
    """convert_hf_to_gguf's q/k reordering: per head, rows [first half; second half] become
    interleaved pairs (row 2i + a of a head is row a * hd/2 + i of the HF head)."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def looks_special(t):
    return (t in ("<pad>", "<mask>") or (t.startswith("<|") and t.endswith("|>"))
            or (t.startswith("<\uff5c") and t.endswith("\uff5c>")))


def vocab_metadata(d, vocab_size):
    """tokens / token types / merges as the converter's gpt2 path produces them."""
    tj = json.load(open(os.path.join(d, "tokenizer.json")))
    tc = json.load(open(os.path.join(d, "tokenizer_config.json")))
    rev = {i: t for t, i in tj["model"]["vocab"].items()}
    added = {a["id"]: a for a in tj["added_tokens"]}
    for i, a in added.items():
        rev[i] = a["content"]
    n = max(max(rev) + 1, vocab_size)  # padded to the embedding rows with unused [PADi]
    tokens, types = [], []
    for i in range(n):
        if i not in rev:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tok = rev[i]
            if added[i]["special"] or looks_special(tok):
                types.append(gguf.TokenType.CONTROL)
            else:
                tok = tok.replace("\u2581", " ")
                types.append(gguf.TokenType.USER_DEFINED)
            tokens.append(tok)
        else:
            tokens.append(rev[i])
            types.append(gguf.TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    ids = {t: i for i, t in enumerate(tokens)}
    return tokens, types, merges, tc, ids


def write_model(name, pre, out_path, qtype, split=0):
    d = os.path.join(MODELS, name)
    cfg = json.load(open(os.path.join(d, "config.json")))
    arch = "qwen2" if cfg["model_type"] == "qwen2" else "llama"
    w = gguf.GGUFWriter(out_path, arch, split_max_tensors=split)
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or cfg["hidden_size"] // heads
    rp = cfg.get("rope_parameters") or {}
    theta = rp.get("rope_theta", cfg.get("rope_theta", 10000.0))
    w.add_name(name)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_rope_freq_base(theta)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_file_type({T.F32: 0, T.Q8_0: 7, T.Q4_0: 2}[qtype])
    if arch == "llama":
        w.add_vocab_size(cfg["vocab_size"])
        w.add_rope_dimension_count(hd)
    tokens, types, merges, tc, ids = vocab_metadata(d, cfg["vocab_size"])
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(ids[tc["bos_token"]])
    w.add_eos_token_id(ids[tc["eos_token"]])
    if tc.get("pad_token") in ids:
        w.add_pad_token_id(ids[tc["pad_token"]])
    w.add_add_bos_token(tc.get("add_bos_token", False))
    w.add_add_eos_token(tc.get("add_eos_token", False))
    w.add_chat_template(tc["chat_template"])

    st = read_safetensors(d)
    if arch == "llama" and rp.get("rope_type") == "llama3":
        factor, low, high = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"]
        old = rp["original_max_position_embeddings"]
        freqs = 1.0 / (theta ** (np.arange(0, hd, 2, dtype=np.float32) / hd))
        fac = []
        for f in freqs:
            wl = 2 * np.pi / f
            if wl < old / high:
                fac.append(1.0)
            elif wl > old / low:
                fac.append(factor)
            else:
                s = (old / wl - low) / (high - low)
                fac.append(1 / ((1 - s) / factor + s))
        w.add_tensor("rope_freqs.weight", np.array(fac, dtype=np.float32))

    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    layer = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
    for hf, x in st.items():
        if hf in names:
            gn = names[hf]
        else:
            parts = hf.split(".")
            gn = f"blk.{parts[2]}.{layer['.'.join(parts[3:-1])]}.{parts[-1]}"
        if arch == "llama" and ".attn_q." in gn:
            x = permute(x, heads)
        if arch == "llama" and ".attn_k." in gn:
            x = permute(x, kv)
        if x.ndim == 1 or qtype == T.F32:
            w.add_tensor(gn, np.ascontiguousarray(x, dtype=np.float32))
        else:
            q = quants.quantize(np.ascontiguousarray(x, dtype=np.float32), qtype)
            w.add_tensor(gn, q, raw_shape=q.shape, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def half(rng, n, lo=-3.0, hi=3.0):
    return rng.uniform(lo, hi, n).astype(np.float16).view(np.uint16)


def dequant_vectors(path):
    """Random blocks (valid halves where the layout has them) and the numpy dequantization."""
    rng = np.random.default_rng(1234)
    # byte offsets of the f16 fields in each block
    halves = {T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
              T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208]}
    out = bytearray()
    for t in [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]:
        blk, size = gguf.GGML_QUANT_SIZES[t]
        nblocks = 8 if blk > 1 else 512
        if t == T.F32:
            raw = rng.standard_normal(nblocks).astype(np.float32).tobytes()
        elif t == T.F16:
            raw = half(rng, nblocks).tobytes()
        elif t == T.BF16:
            raw = (rng.standard_normal(nblocks).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
        else:
            b = rng.integers(0, 256, (nblocks, size), dtype=np.uint8)
            for off in halves[t]:
                b[:, off:off + 2] = half(rng, nblocks, -0.1, 0.1).view(np.uint8).reshape(nblocks, 2)
            raw = b.tobytes()
        y = quants.dequantize(np.frombuffer(raw, dtype=np.uint8), t).astype(np.float32).reshape(-1)
        assert y.size == nblocks * blk and np.isfinite(y).all(), t
        out += struct.pack("<III", int(t), y.size, len(raw)) + raw + y.tobytes()
    open(path, "wb").write(bytes(out))


def zstd(path):
    subprocess.run(["zstd", "-19", "-q", "-f", "--rm", path], check=True)


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, pre in [("tiny-llama3", "llama-bpe"), ("tiny-qwen2", "deepseek-r1-qwen")]:
        p = os.path.join(OUT, f"{name}-f32.gguf")
        write_model(name, pre, p, T.F32)
        zstd(p)
    write_model("tiny-qwen2", "deepseek-r1-qwen", os.path.join(OUT, "tiny-qwen2-q8_0.gguf"), T.Q8_0)
    # split like gguf-split: first part has the metadata, both carry split.* keys
    write_model("tiny-llama3", "llama-bpe", os.path.join(OUT, "tiny-llama3-q4_0.gguf"), T.Q4_0, split=12)
    dequant_vectors(os.path.join(OUT, "dequant.bin"))
    for f in sorted(os.listdir(OUT)):
        print(f"{os.path.getsize(os.path.join(OUT, f)):>10}  {f}")


if __name__ == "__main__":
    sys.exit(main())
