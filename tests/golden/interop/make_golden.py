#!/usr/bin/env python3
"""Writes the golden files of tests/test_interop.cpp: a 2-layer D=16 LRA classifier (full and ls:w=4,r=3),
4 sequences with padding, its logits, loss and every gradient, and the losses of 3 AdamW steps under the
reference's OneCycle schedule, all computed in float64 by docs/interop/lra_reference.py (an implementation
of ../../../../shared/spec/lra.md with the PyTorch LRA code's structure and autograd; not lsbench's code).
The weights are float32 values (what lsbench reads); everything computed from them is float64.

usage (Debian: apt-get install python3-torch python3-numpy): python3 tests/golden/interop/make_golden.py
Files, per variant folder (full/, ls/):
  weights/NAME.npy  float32, the state_dict names   ids.npy int64 (4, 16)   mask.npy float32 (4, 16)
  labels.npy int64 (4)   logits.npy float64 (4, 3)   loss.npy float64 (1)   grads/NAME.npy float64
  train_losses.npy float64 (4): the loss before each of 3 AdamW steps and after the third
  (steps on the same batch; OneCycle peak 3e-3, warm-up 3 of 10 steps, weight decay 0.01)
"""
import os
import shutil
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "docs", "interop"))
import lra_reference as ref  # noqa: E402

VOCAB, N, CLASSES, D, H, DMLP, LAYERS, B = 11, 16, 3, 16, 2, 32, 2, 4
LENGTHS = [16, 13, 9, 5]
PEAK, WARMUP, TOTAL, WD, STEPS = 3e-3, 3, 10, 0.01, 3


def main():
    torch.manual_seed(7)
    gen = torch.Generator().manual_seed(11)
    ids = torch.randint(0, VOCAB, (B, N), generator=gen)
    mask = torch.zeros(B, N, dtype=torch.float64)
    for i, length in enumerate(LENGTHS):
        mask[i, :length] = 1
    ids = ids * mask.long()  # pad id 0 at padded positions
    labels = torch.tensor([0, 2, 1, 2])
    for name, variant in (("full", "full"), ("ls", ("ls", 4, 3))):
        out = os.path.join(HERE, name)
        shutil.rmtree(out, ignore_errors=True)
        model = ref.ModelForSC(VOCAB, N, CLASSES, variant, dim=D, heads=H, mlp_dim=DMLP, layers=LAYERS,
                               pooling="mean-all")
        with torch.no_grad():  # LayerNorms away from (1, 0) so that their gradients matter; then float32 values
            for pname, p in model.named_parameters():
                if "norm" in pname or "dual_ln" in pname:
                    p.add_(0.1 * torch.randn(p.shape, generator=gen))
                p.copy_(p.to(torch.float32))
        ref.save_state_dict(model, os.path.join(out, "weights"))
        model = model.double()
        logits, loss = model(ids, mask, labels)
        loss.backward()
        np.save(os.path.join(out, "ids.npy"), ids.numpy())
        np.save(os.path.join(out, "mask.npy"), mask.to(torch.float32).numpy())
        np.save(os.path.join(out, "labels.npy"), labels.numpy())
        np.save(os.path.join(out, "logits.npy"), logits.detach().numpy())
        np.save(os.path.join(out, "loss.npy"), np.array([loss.item()]))
        os.makedirs(os.path.join(out, "grads"))
        for pname, p in model.named_parameters():
            np.save(os.path.join(out, "grads", pname + ".npy"), p.grad.numpy())
        opt, sched = ref.one_cycle(model, PEAK, WARMUP, TOTAL, WD)
        losses = []
        for _ in range(STEPS):
            opt.zero_grad()
            _, loss = model(ids, mask, labels)
            losses.append(loss.item())
            loss.backward()
            opt.step()
            sched.step()
        losses.append(model(ids, mask, labels)[1].item())
        np.save(os.path.join(out, "train_losses.npy"), np.array(losses))
        print(name, "loss", losses[0], "after 3 steps", losses[-1])


if __name__ == "__main__":
    main()
