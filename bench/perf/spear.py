"""`make perf-spear`: SPEAR time per batch and proposals drawn, b = 8, 12, 16, 20, width 200.

Inputs are real photographs at CIFAR-10 size (the offline stand-in crops), the network the
paper's untrained 6-layer ReLU FCNN, the client gradient float64. Prints one line per batch and
a summary per b; the expectation 2^(b-1) * H_b (REFERENCE §2) is printed beside the median.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from attacks.base import Observation
from attacks.spear import SpearAttack
from bench.client import cross_entropy, fedsgd_gradient
from bench.models import build_model, fcnn
from datasets import load_source, select_batch


def expected_proposals(b: int) -> float:
    return 2 ** (b - 1) * sum(1.0 / k for k in range(1, b + 1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 12, 16, 20])
    ap.add_argument("--width", type=int, default=200)
    ap.add_argument("--batches", type=int, default=3, help="batches per batch size")
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--sampling", default="uniform", choices=["uniform", "adaptive"])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    src = load_source(args.dataset)
    spec = src.info.spec()
    print(f"SPEAR perf: {args.dataset} ({src.data_source}), FCNN depth 6 width {args.width}, float64, "
          f"{torch.get_num_threads()} torch threads, sampling={args.sampling}")
    print(f"{'b':>3} {'batch':>5} {'status':>8} {'time_s':>8} {'proposals':>10} {'prop/s':>9}")
    summary = []
    for b in args.batch_sizes:
        times, props = [], []
        for i in range(args.batches):
            idx = select_batch(src.labels, b, seed=0, batch_index=i)
            x01, y, _ = src.batch(idx)
            factory = lambda **kw: fcnn(width=args.width, depth=6, **kw)  # noqa: E731
            model = build_model(factory, input_shape=spec.shape, num_classes=spec.num_classes, seed=i)
            grads, _ = fedsgd_gradient(model, spec.normalize(x01.double()), y)
            obs = Observation(model, grads, cross_entropy, spec, batch_size=None)
            attack = SpearAttack(progress=False, sampling=args.sampling)
            t0 = time.perf_counter()
            rec = attack.reconstruct(obs, generator=torch.Generator().manual_seed(i))
            dt = time.perf_counter() - t0
            p = rec.diagnostics.get("proposals", 0)
            times.append(dt)
            props.append(p)
            print(f"{b:>3} {i:>5} {rec.status:>8} {dt:>8.2f} {p:>10} {p / dt:>9.0f}", flush=True)
        summary.append((b, statistics.median(times), statistics.median(props), sum(props) / sum(times)))
    print("\nsummary (medians over batches)")
    print(f"{'b':>3} {'time_s':>8} {'proposals':>10} {'expected':>10} {'prop/s':>9}")
    for b, t, p, rate in summary:
        print(f"{b:>3} {t:>8.2f} {p:>10.0f} {expected_proposals(b):>10.0f} {rate:>9.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
