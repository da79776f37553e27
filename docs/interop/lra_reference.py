"""The LRA classifier of the PyTorch LRA code (the Nystromformer LRA code, reused by the Transformer-LS
authors' `lra/` folder), written again from ../../../shared/spec/lra.md and attention.md with the same
module structure, so that its state_dict names are the reference code's:

  model.embeddings.word_embeddings / position_embeddings, model.transformer_{i}.norm1 / mha / norm2 /
  mlpblock.{0,3}, model.norm, seq_classifer.mlpblock.{0,2}

`mha` is the softmax Attention (W_q, W_k, W_v, ff) or, for `ls`, AttentionLS (W_q, W_k, W_v, W_o,
dconv_fc, dual_ln_l, dual_ln_s). Pooling "mean-all" is the reference's: the final LayerNorm's output
times the mask, averaged over every position; "mean" is lsbench's default (real tokens only).
Used by docs/interop/check_pytorch.py (fp32, against the lsbench binary) and by
tests/data/interop/make_golden.py (float64, the golden files of the Catch2 suite). Dropout is left out:
interop is checked with dropout 0.

The reference's training loop uses torch.optim.AdamW (betas (0.9, 0.999), eps 1e-6) under
torch.optim.lr_scheduler.OneCycleLR(max_lr, pct_start = warmup / steps, anneal_strategy = "linear",
total_steps = steps), with that scheduler's defaults (start at max_lr / 25, beta1 cycled 0.95 -> 0.85 ->
0.95): `lsbench train --schedule onecycle` follows it (one_cycle() below builds the pair).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Embeddings(nn.Module):
    def __init__(self, vocab, positions, dim):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, dim)
        self.position_embeddings = nn.Embedding(positions, dim)
        nn.init.normal_(self.word_embeddings.weight, std=0.02)
        nn.init.normal_(self.position_embeddings.weight, std=0.02)

    def forward(self, ids):
        pos = torch.arange(ids.shape[1], device=ids.device)[None, :]
        return self.word_embeddings(ids) + self.position_embeddings(pos)


def split_heads(x, h):  # (b, n, D) -> (b, h, n, d)
    b, n, D = x.shape
    return x.reshape(b, n, h, D // h).transpose(1, 2)


def combine_heads(x):  # (b, h, n, d) -> (b, n, D)
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class SoftmaxAttention(nn.Module):
    """`full`: Q K^T / sqrt(d), padded keys pushed to -1e6 as the reference does, softmax, times V."""

    def __init__(self, dim, heads):
        super().__init__()
        self.h = heads
        self.W_q, self.W_k, self.W_v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.ff = nn.Linear(dim, dim)

    def forward(self, x, mask):
        q, k, v = (split_heads(w(x), self.h) for w in (self.W_q, self.W_k, self.W_v))
        dot = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        dot = dot - 1e6 * (1 - mask[:, None, None, :])
        return self.ff(combine_heads(torch.softmax(dot, dim=-1) @ v))


class AttentionLS(nn.Module):
    """`ls` (Transformer-LS, bidirectional, no cls token, no conv): dynamic projection of keys and values
    to r landmarks per head plus a segment window of w + 2e keys, one joint softmax."""

    def __init__(self, dim, heads, w, r):
        super().__init__()
        self.h, self.w, self.r = heads, w, r
        self.W_q, self.W_k, self.W_v, self.W_o = (nn.Linear(dim, dim) for _ in range(4))
        self.dual_ln_s, self.dual_ln_l = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dconv_fc = nn.Linear(dim, heads * r)

    def window(self, t, e):  # (b, h, n, d) -> (b, h, n / w, w + 2e, d): the keys each segment sees
        b, h, n, d = t.shape
        t = F.pad(t, (0, 0, e, e))
        idx = torch.arange(n // self.w, device=t.device)[:, None] * self.w + torch.arange(self.w + 2 * e, device=t.device)
        return t[:, :, idx, :]

    def forward(self, x, mask):
        b, n, D = x.shape
        h, w, r = self.h, self.w, self.r
        pad = mask < 0.5  # (b, n) True at padded positions
        q = split_heads(self.W_q(x), h) / math.sqrt(D // h)
        k = split_heads(self.dual_ln_l(self.W_k(x)), h)
        v = split_heads(self.dual_ln_l(self.W_v(x)), h)
        scores = []
        if r > 0:
            p = self.dconv_fc(x).masked_fill(pad[:, :, None], float("-inf")).softmax(dim=1)  # over the sequence
            p = p.view(b, n, h, r).permute(0, 2, 3, 1)  # (b, h, r, n): column i*r + j is head i, landmark j
            kc = split_heads(self.dual_ln_s(combine_heads(p @ k)), h)  # (b, h, r, d)
            vc = split_heads(self.dual_ln_s(combine_heads(p @ v)), h)
            scores.append(q @ kc.transpose(-2, -1))
        if w > 0:
            e = max(w // 2, 1)
            kw, vw = self.window(k, e), self.window(v, e)
            valid = self.window((~pad).to(x.dtype)[:, None, :, None], e)[..., 0] > 0.5  # (b, 1, n / w, w + 2e)
            qs = q.reshape(b, h, n // w, w, -1)
            s = (qs @ kw.transpose(-2, -1)).masked_fill(~valid[:, :, :, None, :], float("-inf"))
            scores.append(s.reshape(b, h, n, -1))
        probs = torch.cat(scores, dim=-1).softmax(dim=-1).masked_fill(pad[:, None, :, None], 0.0)
        c = 0
        if r > 0:
            c = c + probs[..., :r] @ vc
        if w > 0:
            pw = probs[..., r:].reshape(b, h, n // w, w, -1)
            c = c + (pw @ vw).reshape(b, h, n, -1)
        return self.W_o(combine_heads(c))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_dim, attention):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.mha = attention
        self.norm2 = nn.LayerNorm(dim)
        self.mlpblock = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(0.0), nn.Linear(mlp_dim, dim),
                                      nn.Dropout(0.0))

    def forward(self, x, mask):
        x = self.mha(self.norm1(x), mask) + x
        return self.mlpblock(self.norm2(x)) + x


class Model(nn.Module):
    def __init__(self, vocab, positions, dim, heads, mlp_dim, layers, make_attention):
        super().__init__()
        self.layers = layers
        self.embeddings = Embeddings(vocab, positions, dim)
        for i in range(layers):
            setattr(self, f"transformer_{i}", Block(dim, heads, mlp_dim, make_attention()))
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids, mask):
        x = self.embeddings(ids)
        for i in range(self.layers):
            x = getattr(self, f"transformer_{i}")(x, mask)
        return self.norm(x) * mask[:, :, None]


class SCHead(nn.Module):
    def __init__(self, dim, mlp_dim, classes):
        super().__init__()
        self.mlpblock = nn.Sequential(nn.Linear(dim, mlp_dim), nn.ReLU(), nn.Linear(mlp_dim, classes))


class ModelForSC(nn.Module):
    """variant "full" or ("ls", w, r); pooling "mean-all" (the reference's) or "mean" (real tokens)."""

    def __init__(self, vocab, positions, classes, variant, dim=64, heads=2, mlp_dim=128, layers=2, pooling="mean-all"):
        super().__init__()
        if variant == "full":
            make = lambda: SoftmaxAttention(dim, heads)
        else:
            _, w, r = variant
            make = lambda: AttentionLS(dim, heads, w, r)
        self.pooling = pooling
        self.model = Model(vocab, positions, dim, heads, mlp_dim, layers, make)
        self.seq_classifer = SCHead(dim, mlp_dim, classes)

    def forward(self, ids, mask, labels):
        """ids (b, n) int64, mask (b, n) float 0/1, labels (b): (logits, mean cross-entropy)."""
        out = self.model(ids, mask)
        pooled = out.mean(dim=1) if self.pooling == "mean-all" else out.sum(dim=1) / mask.sum(dim=1, keepdim=True)
        logits = self.seq_classifer.mlpblock(pooled)
        return logits, F.cross_entropy(logits, labels)


def one_cycle(model, peak, warmup, steps, weight_decay):
    """The reference's optimiser and schedule: call opt.step() then sched.step() once per training step."""
    opt = torch.optim.AdamW(model.parameters(), lr=peak, betas=(0.9, 0.999), eps=1e-6, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=peak, pct_start=warmup / steps, anneal_strategy="linear",
                                                total_steps=steps)
    return opt, sched


def save_state_dict(model, folder):
    """Every tensor of the state_dict as folder/NAME.npy, float32, C order (lsbench --weights / --init-weights)."""
    import os
    import numpy as np

    os.makedirs(folder, exist_ok=True)
    for name, t in model.state_dict().items():
        np.save(os.path.join(folder, name + ".npy"), np.ascontiguousarray(t.detach().cpu().to(torch.float32).numpy()))


def load_state_dict(model, folder):
    """The arrays lsbench wrote (--save-weights, model run's inputs) into the model."""
    import os
    import numpy as np

    state = {}
    for name in model.state_dict():
        state[name] = torch.from_numpy(np.load(os.path.join(folder, name + ".npy")))
    model.load_state_dict(state)
