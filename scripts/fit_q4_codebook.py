#!/usr/bin/env python3
"""Fits the 16-level q4 codebook (quant/formats.h kQ4Levels) to weight-like data.

k-means with a per-group scale: groups of 32 values (Gaussian and Student-t(5), the shapes of
trained weight rows) are each scaled to best fit the current levels, then every level moves to
the scale-weighted mean of the values assigned to it. Prints the levels as int8 (max |level| 127)
and the relative squared error, next to plain absmax int4 for comparison.
Dev tooling only (numpy); the result is a constant in the source.
"""
import numpy as np

G = 32
rng = np.random.default_rng(0)
X = np.concatenate([rng.standard_normal((60000, G)), rng.standard_t(5, (30000, G))])
cb = np.linspace(-1, 1, 16)


def assign(X, cb):
    am = np.abs(X).max(1, keepdims=True)
    best = None
    for f in np.linspace(0.7, 1.3, 25):
        s = am / (np.abs(cb).max() * f)
        for sg in (1, -1):  # the codebook is asymmetric: try both signs of the scale
            sc = s * sg
            q = np.abs(X[:, :, None] / sc[:, :, None] - cb[None, None, :]).argmin(2)
            err = ((X - sc * cb[q]) ** 2).sum(1)
            if best is None:
                best = (err, sc, q)
            else:
                m = err < best[0]
                best = (np.where(m, err, best[0]), np.where(m[:, None], sc, best[1]), np.where(m[:, None], q, best[2]))
    return best


for it in range(40):
    err, sc, q = assign(X, cb)
    Y = X / sc
    for k in range(16):
        m = q == k
        if m.any():
            w = sc[np.nonzero(m)[0]][:, 0] ** 2
            cb[k] = (Y[m] * w).sum() / w.sum()
    cb = np.sort(cb)
    cb /= np.abs(cb).max()
    print(it, err.mean() / (X ** 2).sum(1).mean())
print(np.round(cb * 127).astype(int).tolist())
am = np.abs(X).max(1, keepdims=True)
s = am / 7
qq = np.clip(np.round(X / s), -8, 7)
print("absmax int4", ((X - qq * s) ** 2).sum(1).mean() / (X ** 2).sum(1).mean())
