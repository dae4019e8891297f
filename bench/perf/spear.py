"""`make perf-spear`: SPEAR's direction search on real photographs — exactness, time, proposals.

Setting: real photographs at CIFAR-10 size (the offline stand-in crops, or real
CIFAR-10 when present), the paper's untrained 6-layer ReLU FCNN of width 200, a float64 client
gradient, the batch size read off the gradient's rank. For each b it prints one line per batch
and a summary: exact k/n (status ok and every image at PSNR ≥ 80 dB after Hungarian matching),
median and max seconds, median proposals (l1 finder: IRLS starts), proposals per second, and the
sampling finder's expectation 2^(b−1)·H_b beside them.

    python -m bench.perf.spear                       # l1 finder, b = 8..28, 10 batches up to 20
    python -m bench.perf.spear --search sampling --batch-sizes 8 12 16 --batches 3
    python -m bench.perf.spear --device cuda --json results/perf/spear_cuda.json

Speed is measured here, never asserted in a test. Time alone (no other jobs) and compare finders
in the same run: on 2 shared cores one torch thread is often fastest (``--threads 1``).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from attacks.base import Observation
from attacks.spear import SpearAttack
from bench.client import cross_entropy, fedsgd_gradient
from bench.scoring.metrics import image_quality
from bench.run.models import build_model, fcnn
from datasets import load_source, select_batch


def expected_proposals(b: int) -> float:
    """Sampling finder: each sample's direction is hit with probability ~2^−(b−1) per proposal,
    coupon collector over b samples (SPEAR paper, arXiv 2403.03945)."""
    return 2 ** (b - 1) * sum(1.0 / k for k in range(1, b + 1))


def default_batches(b: int, n: int | None) -> int:
    """10 batches per b up to 20, 5 above unless --batches says otherwise."""
    return n if n is not None else (10 if b <= 20 else 5)


def run_one(src, spec, b: int, i: int, args) -> dict:
    idx = select_batch(src.labels, b, seed=0, batch_index=i)
    x01, y, _ = src.batch(idx)
    factory = lambda **kw: fcnn(width=args.width, depth=6, **kw)  # noqa: E731
    model = build_model(factory, input_shape=spec.shape, num_classes=spec.num_classes, seed=i,
                        device=args.device)
    x = spec.normalize(x01.double()).to(args.device)
    grads, _ = fedsgd_gradient(model, x, y.to(args.device))
    obs = Observation(model, grads, cross_entropy, spec, batch_size=None)
    knobs = {"progress": False, "search": args.search, "device": args.device,
             "max_proposals": args.max_proposals}
    if args.sampling:
        knobs["sampling"] = args.sampling
    knobs.update(args.knobs)
    attack = SpearAttack(**knobs)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    deadline = time.monotonic() + args.time_budget if args.time_budget else None
    rec = attack.reconstruct(obs, generator=torch.Generator().manual_seed(i), deadline=deadline)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    q = image_quality(spec.denormalize(rec.inputs.reshape(-1, *spec.shape)).cpu(), x01.double())
    exact = rec.status == "ok" and q["exact_fraction"] == 1.0
    d = rec.diagnostics
    return {"b": b, "batch": i, "status": rec.status, "exact": exact, "psnr_min": q["psnr_min"],
            "time_s": dt, "proposals": int(d.get("proposals", 0)),
            "time_factorization_s": d.get("time_factorization_s"), "reason": d.get("reason", "")}


def _knob(ap, kv: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as YAML (true, 0.5, null, [1, 2]); the key must be a knob."""
    import dataclasses

    import yaml

    from attacks.spear.config import SpearConfig

    key, sep, val = kv.partition("=")
    names = {f.name for f in dataclasses.fields(SpearConfig)}
    if not sep or key not in names:
        ap.error(f"--set {kv!r}: expected KNOB=VALUE with KNOB one of {', '.join(sorted(names))}")
    return key, yaml.safe_load(val)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 12, 16, 20, 24, 28])
    ap.add_argument("--batches", type=int, default=None,
                    help="batches per batch size (default: 10 up to b=20, 5 above)")
    ap.add_argument("--width", type=int, default=200)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--search", default="l1", choices=["l1", "sampling"])
    ap.add_argument("--sampling", default=None, choices=["uniform", "adaptive"],
                    help="row sampling of the sampling finder")
    ap.add_argument("--max-proposals", type=int, default=20_000_000)
    ap.add_argument("--time-budget", type=float, default=300.0, help="seconds per batch (0: none)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:k]")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--json", type=Path, default=None, help="write every line and the summary here")
    ap.add_argument("--set", dest="knobs", action="append", default=[], metavar="KNOB=VALUE",
                    help="any SpearConfig knob (attacks/spear/config.py), e.g. --set templates=false; repeatable")
    args = ap.parse_args(argv)
    args.knobs = dict(_knob(ap, kv) for kv in args.knobs)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is visible to torch on this machine")
    if args.threads:
        torch.set_num_threads(args.threads)
    src = load_source(args.dataset)
    spec = src.info.spec()
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"SPEAR perf: {args.dataset} ({src.data_source}), FCNN depth 6 width {args.width}, float64, "
          f"search={args.search}, device={args.device} ({device_name}), {torch.get_num_threads()} torch threads"
          + "".join(f", {k}={v}" for k, v in args.knobs.items()))
    print(f"{'b':>3} {'batch':>5} {'status':>8} {'exact':>5} {'time_s':>8} {'proposals':>10} {'prop/s':>9}")
    lines, summary = [], []
    for b in args.batch_sizes:
        rows = []
        for i in range(default_batches(b, args.batches)):
            r = run_one(src, spec, b, i, args)
            rows.append(r)
            lines.append(r)
            print(f"{b:>3} {i:>5} {r['status']:>8} {str(r['exact']):>5} {r['time_s']:>8.2f} "
                  f"{r['proposals']:>10} {r['proposals'] / r['time_s']:>9.0f}", flush=True)
        times = [r["time_s"] for r in rows]
        props = [r["proposals"] for r in rows]
        summary.append({"b": b, "exact": sum(r["exact"] for r in rows), "n": len(rows),
                        "median_s": statistics.median(times), "max_s": max(times),
                        "median_proposals": statistics.median(props),
                        "proposals_per_s": sum(props) / sum(times),
                        "expected_sampling_proposals": expected_proposals(b)})
    print(f"\nsummary (search={args.search})")
    print(f"{'b':>3} {'exact':>7} {'median_s':>9} {'max_s':>8} {'proposals':>10} {'prop/s':>9} {'2^(b-1)H_b':>11}")
    for s in summary:
        print(f"{s['b']:>3} {s['exact']:>3}/{s['n']:<3} {s['median_s']:>9.2f} {s['max_s']:>8.2f} "
              f"{s['median_proposals']:>10.0f} {s['proposals_per_s']:>9.0f} {s['expected_sampling_proposals']:>11.0f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"config": {k: str(v) for k, v in vars(args).items()},
                                         "device": device_name, "threads": torch.get_num_threads(),
                                         "lines": lines, "summary": summary}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
