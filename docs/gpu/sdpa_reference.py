#!/usr/bin/env python3
"""PyTorch's scaled_dot_product_attention, timed the way lsbench times attention on CUDA, so that
lsbench's GPU figures can be compared with it on the same machine in the same call.

Times either the attention core (--what core: q, k, v of shape (b, h, n, d)) or the whole layer that
`lsbench attention bench` times (--what layer: x (b, n, D) through the Q, K, V projections, SDPA and
the output projection), fwd+bwd with a random output gradient, CUDA events around each sample,
warm-up not counted, median of at least 5 samples and 1 s. Prints one JSON line per point:
  {"backend": "...", "dtype": "...", "b": ., "h": ., "n": ., "d": ., "median_ms": ., "stdev_ms": ., "tflops": .}
TFLOP/s use lsbench's cost model (core 4*b*h*n^2*d, causal 2*b*h*n*(n+1)*d, layer adds 8*b*n*D^2; fwd+bwd = 3x forward).

usage: python3 docs/gpu/sdpa_reference.py --b 1 --h 16 --d 64 --n 1024 2048 4096 --dtype bf16 fp32
"""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F


def time_ms(fn, min_reps=5, min_time_ms=1000.0, warmup=2):
    for _ in range(warmup):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    samples = []
    while len(samples) < min_reps or sum(samples) < min_time_ms:
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end))
        if len(samples) >= 1000:
            break
    return statistics.median(samples), (statistics.stdev(samples) if len(samples) > 1 else 0.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--b", type=int, default=1)
    ap.add_argument("--h", type=int, default=16)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--n", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    ap.add_argument("--dtype", nargs="+", default=["bf16", "fp32"])
    ap.add_argument("--mode", choices=["fwd", "fwdbwd"], default="fwdbwd")
    ap.add_argument("--what", choices=["core", "layer"], default="layer")
    ap.add_argument("--causal", action="store_true", help="is_causal=True (lsbench's --causal)")
    a = ap.parse_args()
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    torch.backends.cuda.matmul.allow_tf32 = False
    for name in a.dtype:
        dt = dtypes[name]
        for n in a.n:
            g = torch.Generator(device="cuda").manual_seed(0)
            D = a.h * a.d
            if a.what == "core":
                shape = (a.b, a.h, n, a.d)
                q, k, v = (torch.randn(shape, device="cuda", dtype=dt, generator=g, requires_grad=True)
                           for _ in range(3))
                dy = torch.randn(shape, device="cuda", dtype=dt, generator=g)
                inputs = (q, k, v)

                def forward():
                    return F.scaled_dot_product_attention(q, k, v, is_causal=a.causal)
            else:
                x = torch.randn((a.b, n, D), device="cuda", dtype=dt, generator=g, requires_grad=True)
                dy = torch.randn((a.b, n, D), device="cuda", dtype=dt, generator=g)
                proj = [torch.nn.Linear(D, D, device="cuda", dtype=dt) for _ in range(4)]
                inputs = (x, *[p.weight for p in proj], *[p.bias for p in proj])

                def heads(t):
                    return t.view(a.b, n, a.h, a.d).transpose(1, 2)

                def forward():
                    c = F.scaled_dot_product_attention(heads(proj[0](x)), heads(proj[1](x)), heads(proj[2](x)),
                                                       is_causal=a.causal)
                    return proj[3](c.transpose(1, 2).reshape(a.b, n, D))

            def step():
                y = forward()
                if a.mode == "fwdbwd":
                    torch.autograd.grad(y, inputs, dy)

            try:
                med, sd = time_ms(step)
            except torch.OutOfMemoryError:
                print(json.dumps({"backend": "torch-sdpa", "dtype": name, "n": n, "status": "oom"}), flush=True)
                torch.cuda.empty_cache()
                continue
            core = (2.0 * (n + 1) if a.causal else 4.0 * n) * a.b * a.h * n * a.d  # lsbench's cost model
            fwd = core + (8.0 * a.b * n * D * D if a.what == "layer" else 0.0)
            flops = fwd * (3.0 if a.mode == "fwdbwd" else 1.0)
            print(json.dumps({"backend": "torch-sdpa " + torch.__version__, "what": a.what, "dtype": name,
                              "mode": a.mode, "causal": a.causal, "b": a.b,
                              "h": a.h, "n": n, "d": a.d, "median_ms": round(med, 4), "stdev_ms": round(sd, 4),
                              "tflops": round(flops / med / 1e9, 2)}), flush=True)
            del inputs, dy
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
