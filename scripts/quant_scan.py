#!/usr/bin/env python3
"""Scores candidate quantization recipes on the trained fixture without writing any kernel.

Each candidate gives every matrix of tests/fixtures/models/tiny-qwen2-py a format (q4, q5, q6, q8
or bf16). The weights are quantized and dequantized here in numpy (same groups of 32, f16 scale,
least-squares scale search, q4's codebook from quant/formats.h), written as an f32 checkpoint,
packed with `r1 pack --quant f32` and scored with
`r1 score --kl-base BF16.r1m --text tests/fixtures/heldout.py.txt --ctx 512`.
The activations stay f32, so a real file measures a little more (the q4 recipe of 2026-11:
0.0137 here, 0.0141 as a q4 file). This is how the q4 and q5 recipes in quant/pack.cpp were
chosen. Dev tooling only (numpy); needs a built r1.

  scripts/quant_scan.py --r1 build/r1 q5-kv8 'q8:k_proj|v_proj;q5:.'
  (a candidate is NAME RULES: `fmt:regex` pairs, first match wins, default q4)
"""
import argparse, json, os, re, shutil, struct, subprocess, sys, tempfile
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, 'tests/fixtures/models/tiny-qwen2-py')
TEXT = os.path.join(ROOT, 'tests/fixtures/heldout.py.txt')
LV4 = np.array([-127, -89, -69, -53, -40, -28, -17, -7, 3, 13, 24, 36, 50, 66, 87, 112], np.float32)
LEVELS = {'q4': LV4, 'q5': np.arange(-16, 16, dtype=np.float32), 'q6': np.arange(-32, 32, dtype=np.float32)}
BPW = {'q4': 4.5, 'q5': 5.5, 'q6': 6.5, 'q8': 8.5, 'bf16': 16}


def load():
    W = {}
    for f in sorted(os.listdir(SRC)):
        if not f.endswith('.safetensors'):
            continue
        b = open(os.path.join(SRC, f), 'rb').read()
        n = struct.unpack('<Q', b[:8])[0]
        for k, v in json.loads(b[8:8 + n]).items():
            if k == '__metadata__':
                continue
            s, e = v['data_offsets']
            raw = np.frombuffer(b[8 + n + s:8 + n + e], np.uint16)  # bf16
            W[k] = (raw.astype(np.uint32) << 16).view(np.float32).reshape(v['shape']).copy()
    return W


def save(W, out):
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(SRC):
        if f.startswith('tokenizer') or f == 'generation_config.json':
            shutil.copy(os.path.join(SRC, f), out)
    h, off, blobs = {}, 0, []
    for k in sorted(W):
        a = np.ascontiguousarray(W[k], np.float32)
        h[k] = {'dtype': 'F32', 'shape': list(a.shape), 'data_offsets': [off, off + a.nbytes]}
        off += a.nbytes
        blobs.append(a.tobytes())
    hb = json.dumps(h).encode()
    hb += b' ' * ((8 - len(hb) % 8) % 8)
    with open(os.path.join(out, 'model.safetensors'), 'wb') as f:
        f.write(struct.pack('<Q', len(hb)) + hb)
        for x in blobs:
            f.write(x)
    cfg = json.load(open(os.path.join(SRC, 'config.json')))
    cfg['dtype'] = 'float32'
    json.dump(cfg, open(os.path.join(out, 'config.json'), 'w'))


def f16(x):
    return x.astype(np.float16).astype(np.float32)


def quant_levels(X, levels):
    """Groups X [n, 32]: nearest levels under a least-squares scale (the sweep of quantize.cpp)."""
    mids = (levels[1:] + levels[:-1]) / 2
    vmax = X[np.arange(len(X)), np.abs(X).argmax(1)]
    vmax = np.where(vmax == 0, 1e-30, vmax)

    def score(inv):
        q = levels[np.searchsorted(mids, X * inv[:, None])]
        xl, ll = (X * q).sum(1), (q * q).sum(1)
        safe = np.maximum(ll, 1e-30)
        return (X * X).sum(1) - np.where(ll > 0, xl * xl / safe, 0), np.where(ll > 0, xl / safe, 0)

    best_e = np.full(len(X), np.inf, np.float32)
    best_s = np.zeros(len(X), np.float32)
    cands = [levels[0] * f / vmax for f in np.linspace(0.85, 1.2, 15)]
    cands += [levels[-1] * f / vmax for f in np.linspace(0.85, 1.2, 15)]
    for it in range(len(cands) + 2):
        inv = cands[it] if it < len(cands) else np.where(best_s != 0, 1 / np.where(best_s == 0, 1, best_s), 0)
        e, s = score(inv)
        m = e < best_e
        best_e[m], best_s[m] = e[m], s[m]
    s = f16(best_s)
    inv = np.where(s != 0, 1 / np.where(s == 0, 1, s), 0)
    return s[:, None] * levels[np.searchsorted(mids, X * inv[:, None])]


def fake(w, fmt):
    if fmt == 'bf16':
        return w
    X = w.reshape(-1, 32)
    if fmt == 'q8':
        s = f16(np.abs(X).max(1) / 127)
        inv = np.where(s != 0, 1 / np.where(s == 0, 1, s), 0)
        Y = s[:, None] * np.clip(np.rint(X * inv[:, None]), -127, 127)
    else:
        Y = quant_levels(X, LEVELS[fmt])
    return Y.reshape(w.shape)


def parse_rules(text):
    rules = []
    for part in filter(None, text.split(';')):
        fmt, rx = part.split(':', 1)
        if fmt not in BPW:
            sys.exit(f'unknown format {fmt}')
        rules.append((fmt, re.compile(rx)))
    return lambda name: next((f for f, rx in rules if rx.search(name)), 'q4')


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--r1', default=os.path.join(ROOT, 'build/r1'))
    ap.add_argument('name')
    ap.add_argument('rules')
    a = ap.parse_args()
    recipe = parse_rules(a.rules)
    W = load()
    V, nbytes = {}, 0.0
    for k, w in W.items():
        if w.ndim == 1:
            V[k] = w
            nbytes += w.size * 4
            continue
        V[k] = fake(w, recipe(k))
        nbytes += w.size * BPW[recipe(k)] / 8
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.join(tmp, 'bf16.r1m')
        subprocess.run([a.r1, 'pack', SRC, '--quant', 'bf16', '-o', base, '-q'], check=True)
        save(V, os.path.join(tmp, 'ckpt'))
        m = os.path.join(tmp, 'm.r1m')
        subprocess.run([a.r1, 'pack', os.path.join(tmp, 'ckpt'), '--quant', 'f32', '-o', m, '-q'], check=True)
        out = subprocess.run([a.r1, 'score', '-m', m, '--kl-base', base, '--text', TEXT, '--ctx', '512'],
                             capture_output=True, text=True, check=True).stdout
    kl = re.search(r'mean KL\s+([0-9.]+)', out).group(1)
    top1 = re.search(r'same top-1\s+([0-9.]+)', out).group(1)
    print(f'{a.name:24s} weights {nbytes / 1e6:6.3f} MB  KL {kl}  top-1 {top1}%')


if __name__ == '__main__':
    main()
