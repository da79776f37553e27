#!/usr/bin/env python3
"""lsbench against the PyTorch LRA model, step for step (README "Moving models between lsbench and PyTorch").

1. For `full` and `ls`: a PyTorch model with the reference code's structure and state_dict names
   (lra_reference.py; or your own reference-code model: only its state_dict is used) is saved as .npy,
   run by `lsbench model run`, and its logits, loss and every gradient are compared with PyTorch's.
2. 20 AdamW steps under the reference's OneCycle schedule, dropout 0: PyTorch trains on 20 saved batches
   from the same start; `lsbench train --init-weights --batches --schedule onecycle` replays them; the
   per-step training losses are compared.
Everything in float32 on the CPU. Prints one line per comparison and exits 1 if one is off by more than
1e-4 (relative to the compared tensor's largest magnitude).

usage: python3 docs/interop/check_pytorch.py [--lsbench build/release/lsbench] [--work /tmp/lsbench-interop]
(Debian: apt-get install python3-torch python3-numpy)
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lra_reference as ref  # noqa: E402

TOL = 1e-4


def scaled_error(got, want, floor=1e-30):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), floor))


def run(cmd):
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def random_batch(gen, b, n, vocab, classes):
    ids = torch.randint(1, vocab, (b, n), generator=gen)
    lengths = torch.randint(n // 4, n + 1, (b,), generator=gen)
    lengths[0] = n
    mask = (torch.arange(n)[None, :] < lengths[:, None]).to(torch.float32)
    return ids * mask.long(), mask, torch.randint(0, classes, (b,), generator=gen)


def save_batch(folder, tag, ids, mask, labels):
    np.save(os.path.join(folder, f"ids{tag}.npy"), ids.numpy().astype(np.int32))
    np.save(os.path.join(folder, f"mask{tag}.npy"), mask.numpy().astype(np.uint8))
    np.save(os.path.join(folder, f"labels{tag}.npy"), labels.numpy().astype(np.int64))


def check_model_run(lsbench, work, name, variant, spec, failures):
    torch.manual_seed(3)
    gen = torch.Generator().manual_seed(4)
    vocab, positions, classes, b, n = 40, 64, 5, 8, 64
    model = ref.ModelForSC(vocab, positions, classes, variant, dim=32, heads=2, mlp_dim=64, layers=2, pooling="mean-all")
    folder = os.path.join(work, f"run-{name}")
    ref.save_state_dict(model, os.path.join(folder, "weights"))
    ids, mask, labels = random_batch(gen, b, n, vocab, classes)
    save_batch(folder, "", ids, mask, labels)
    logits, loss = model(ids, mask, labels)
    loss.backward()
    run([lsbench, "model", "run", "--weights", os.path.join(folder, "weights"), "--variant", spec, "--heads", "2",
         "--input", os.path.join(folder, "ids.npy"), "--mask", os.path.join(folder, "mask.npy"), "--labels",
         os.path.join(folder, "labels.npy"), "--grads", os.path.join(folder, "grads"), "--output",
         os.path.join(folder, "logits.npy"), "--pooling", "mean-all"])
    rows = [("logits", scaled_error(np.load(os.path.join(folder, "logits.npy")), logits.detach().numpy())),
            ("loss", scaled_error(np.load(os.path.join(folder, "grads", "loss.npy")), [loss.item()]))]
    # Some gradients are 0 but for rounding (the key bias: a softmax ignores a score added to every key;
    # ls's projection bias: a constant along the sequence): each is held to at least a hundredth of the
    # model's largest gradient instead of to its own magnitude.
    largest = max(float(p.grad.abs().max()) for p in model.parameters())
    worst = ("", 0.0)
    for pname, p in model.named_parameters():
        e = scaled_error(np.load(os.path.join(folder, "grads", pname + ".npy")), p.grad.numpy(), 1e-2 * largest)
        worst = max(worst, (pname, e), key=lambda t: t[1])
    rows.append((f"gradients ({len(list(model.parameters()))} tensors; worst {worst[0]})", worst[1]))
    for what, e in rows:
        print(f"model run {name:5s} {what}: max error / max magnitude {e:.2e}")
        if not e <= TOL:
            failures.append(f"model run {name} {what}")


def check_training(lsbench, work, name, spec, failures):
    data = os.path.join(work, "listops")
    if not os.path.exists(os.path.join(data, "basic_train.tsv")):
        run([lsbench, "data", "generate", "listops", "--out", data, "--train", "2000", "--val", "200", "--test", "200"])
    folder = os.path.join(work, f"train-{name}")
    common = ["train", "--task", "listops", "--data-dir", data, "--preset", "lra-small", "--variant", spec,
              "--batch", "8", "--max-val", "16", "--max-test", "16", "--threads", "2", "--no-progress"]
    # The model's sizes as lsbench builds them for this task: a one-step run that saves its weights.
    run([lsbench] + common + ["--steps", "1", "--warmup", "0", "--save-weights", os.path.join(folder, "shape")])
    shape_dir = os.path.join(folder, "shape", "final")
    vocab, dim = np.load(os.path.join(shape_dir, "model.embeddings.word_embeddings.weight.npy")).shape
    positions = np.load(os.path.join(shape_dir, "model.embeddings.position_embeddings.weight.npy")).shape[0]
    classes = np.load(os.path.join(shape_dir, "seq_classifer.mlpblock.2.weight.npy")).shape[0]
    variant = "full" if spec == "full" else ("ls", 8, 32)
    torch.manual_seed(5)
    gen = torch.Generator().manual_seed(6)
    model = ref.ModelForSC(vocab, positions, classes, variant, dim=64, heads=2, mlp_dim=128, layers=2, pooling="mean-all")
    ref.save_state_dict(model, os.path.join(folder, "init"))
    batches = os.path.join(folder, "batches")
    os.makedirs(batches, exist_ok=True)
    steps, warmup, peak = 20, 4, 1e-3
    opt, sched = ref.one_cycle(model, peak, warmup, steps, weight_decay=0.01)
    torch_losses = []
    for s in range(steps):
        ids, mask, labels = random_batch(gen, 8, positions, vocab, classes)
        save_batch(batches, f"_{s:06d}", ids, mask, labels)
        opt.zero_grad()
        _, loss = model(ids, mask, labels)
        torch_losses.append(loss.item())
        loss.backward()
        opt.step()
        sched.step()
    report = os.path.join(folder, "report.json")
    run([lsbench] + common + ["--steps", str(steps), "--warmup", str(warmup), "--lr", str(peak), "--weight-decay", "0.01",
                              "--schedule", "onecycle", "--pooling", "mean-all", "--dropout", "0", "--log-every", "1",
                              "--eval-every", str(steps), "--init-weights", os.path.join(folder, "init"), "--batches",
                              batches, "--out", report])
    lsb_losses = json.load(open(report))["results"][0]["curves"]["loss"]
    errs = [abs(a - b) / abs(b) for a, b in zip(lsb_losses, torch_losses)]
    print(f"train {name:5s} 20 OneCycle AdamW steps: losses {torch_losses[0]:.6f} -> {torch_losses[-1]:.6f} (PyTorch), "
          f"{lsb_losses[0]:.6f} -> {lsb_losses[-1]:.6f} (lsbench); largest relative difference {max(errs):.2e}")
    if len(lsb_losses) != steps or not max(errs) <= TOL:
        failures.append(f"train {name}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lsbench", default=os.path.join(os.path.dirname(__file__), "..", "..", "build", "release", "lsbench"))
    ap.add_argument("--work", default="/tmp/lsbench-interop")
    ap.add_argument("--only", choices=["run", "train"], help="only the model run checks, or only the training ones")
    args = ap.parse_args()
    torch.set_num_threads(2)
    os.makedirs(args.work, exist_ok=True)
    failures = []
    if args.only != "train":
        check_model_run(args.lsbench, args.work, "full", "full", "full", failures)
        check_model_run(args.lsbench, args.work, "ls", ("ls", 4, 4), "ls:w=4,r=4", failures)
    if args.only != "run":
        check_training(args.lsbench, args.work, "full", "full", failures)
        check_training(args.lsbench, args.work, "ls", "ls:w=8,r=32", failures)
    print("all within 1e-4" if not failures else "off by more than 1e-4: " + ", ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
