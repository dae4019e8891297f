#!/usr/bin/env python
"""Peer check of attacks/ci_net.py against the CI-Net authors' code (github czhang024/CI-Net).

    .venv/bin/python scripts/peer_check_ci_net.py --authors-repo /path/to/CI-Net [--seeds 0 1 2]
        [--iterations 300] [--batch-size 4] [--activation sigmoid] [--threads 1]

The authors' files (``model/generator.py``, ``layers/``, ``utils/reconstructed.py``) are imported
from ``--authors-repo`` at run time; nothing of theirs is copied into this repository. Their
``utils/nb_utils.py`` imports ``piq`` (image-quality scores this check never calls): when piq is not
installed a module that raises on use stands in for it. Their attack loop draws its progress bar
with ``tqdm.notebook``, which needs Jupyter widgets; the loop's ``trange`` is swapped for tqdm's
terminal one.

One setting for both implementations, all in float64: CIFAR-10 images (32 × 32 RGB, the size the
authors' generator makes), the paper's 6-layer FCNN of width 200 (sigmoid client by default), the
labels given (the authors use the true labels), the client's gradient computed once. The data is
normalised with mean = std = 0.5, so the authors' generator output (``tanh``, fed to the model as
is) and ours (``tanh`` read as pixels and normalised) are the same map.

1. Loss at the same generator weights: our generator's weights (and spectral-norm vectors) are
   copied into the authors' generator; at the initial weights and at randomly perturbed ones, the
   authors' ``loss_inverting_gt`` and our objective must agree (absolute difference at most
   --loss-tol), as must their gradients w.r.t. the generator's weights (relative, --grad-tol).
2. PSNR after the same number of iterations, per seed: the authors' ``CI_attacker`` (global RNG
   seeded) and our ``CINetAttack`` (generator seeded), each reporting its last iterate; PSNR after
   Hungarian matching (bench/scoring/metrics.py). The means must agree within seed noise: the difference of
   the means at most --psnr-sigmas standard errors of that difference (or 1 dB, whichever is larger).

Exit status 0 when both checks pass, 1 otherwise.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import io
import math
import statistics
import sys
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from attacks.base import DataSpec, Observation  # noqa: E402
from attacks.ci_net import CINetAttack, CosineGradientLoss, to_model_space  # noqa: E402
from attacks.priors import total_variation  # noqa: E402
from bench.client import cross_entropy, fedsgd_gradient  # noqa: E402
from bench.scoring.metrics import MetricConfig, image_quality  # noqa: E402
from bench.run.models import build_model, fcnn  # noqa: E402
from datasets import load_source, select_batch  # noqa: E402


def load_authors(repo: Path):
    """The authors' generator module and loss, imported from their checkout."""
    for f in ("model/generator.py", "utils/reconstructed.py", "layers/norm.py"):
        if not (repo / f).is_file():
            raise SystemExit(f"--authors-repo {repo}: no {f}; pass a checkout of github czhang024/CI-Net")
    try:
        import piq  # noqa: F401
    except ImportError:
        def _unused(*_a, **_k):
            raise RuntimeError("piq is not installed; the peer check does not compute SSIM/FSIM")
        sys.modules["piq"] = types.SimpleNamespace(ssim=_unused, fsim=_unused)
    sys.path.insert(0, str(repo))
    gen = importlib.import_module("model.generator")
    rec = importlib.import_module("utils.reconstructed")
    from tqdm import trange

    gen.trange = lambda n, **kw: trange(n, disable=True)  # tqdm.notebook needs Jupyter widgets
    return gen, rec


def authors_name(name: str, resolution: int) -> str:
    """Our generator's state-dict key -> the authors' (attacks/ci_net_generator.py mirrors their layout)."""
    head, _, rest = name.partition(".")
    if head == "stem":
        return "input_layer.0." + rest
    if head == "stem_bn":
        return "input_layer.1." + rest
    if head == "to_image":
        return f"to_rgb_{resolution}." + rest
    idx, layer, leaf = rest.split(".")
    slot = {"conv1": 0, "bn1": 1, "conv2": 3, "bn2": 4}[layer]
    return f"progression_{4 * 2 ** int(idx)}.conv.{slot}." + ("u0" if leaf == "u" else leaf)


def copy_into_authors(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    target = theirs.state_dict()
    mapped = {authors_name(k, ours.resolution): v for k, v in ours.state_dict().items()}
    missing = [k for k in target if k not in mapped and not k.endswith("sv0")]
    if missing or any(k not in target for k in mapped):
        raise SystemExit(f"generator layouts differ: {missing[:4]} / {[k for k in mapped if k not in target][:4]}")
    target.update(mapped)
    theirs.load_state_dict(target)


def setting(args):
    src = load_source("cifar10", prefer="standin")
    idx = select_batch(src.labels, args.batch_size, seed=0, batch_index=0)
    x01, y, _ = src.batch(idx)
    x01 = x01.double()
    spec = DataSpec(shape=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3, num_classes=10)
    model = build_model(lambda **kw: fcnn(width=200, depth=6, activation=args.activation, **kw),
                        input_shape=spec.shape, num_classes=10, seed=0)
    grads, _ = fedsgd_gradient(model, spec.normalize(x01), y)
    obs = Observation(model=model, gradients=grads, loss_fn=cross_entropy, data_spec=spec,
                      batch_size=args.batch_size, labels=y)
    return spec, x01, y, model, obs, src.data_source


def check_loss(gen_mod, rec_mod, spec, y, model, obs, args) -> tuple[float, float]:
    """Largest absolute loss difference and relative generator-gradient difference over a few weight
    points. The loss is 1 - cos, so its absolute difference is the cosine's rounding (~1e-16)."""
    B = args.batch_size
    ours, z, info = CINetAttack(dtype="float64").build_generator(
        B, spec, torch.Generator().manual_seed(11), torch.float64, torch.device("cpu"))
    theirs = gen_mod.Generator(image_res=32, in_channel=info["generator_width"]).double().train()
    matcher = CosineGradientLoss(obs, y, torch.float64, torch.device("cpu"))
    observed = [obs.gradients[n] for n, _ in model.named_parameters()]
    pert = torch.Generator().manual_seed(12)
    worst_loss = worst_grad = 0.0
    print(f"loss at the same generator weights (width {info['generator_width']}, "
          f"{info['generator_params']} parameters, B={B}, TV weight {args.tv}):")
    for point in range(args.points):
        if point:
            with torch.no_grad():
                for p in ours.parameters():
                    p.add_(0.02 * p.abs().mean() * torch.randn(p.shape, generator=pert, dtype=p.dtype))
        state = copy.deepcopy(ours.state_dict())
        copy_into_authors(ours, theirs)
        # ours: the attack's objective on the generator's output in the model's input space
        x = to_model_space(ours(z), spec)
        mine = matcher(x) + args.tv * total_variation(x)
        g_mine = torch.autograd.grad(mine, list(ours.parameters()))
        # theirs: the body of CI_attacker.reconstructed_gt at the same weights and latents
        fake = theirs(z)
        dummy = torch.nn.CrossEntropyLoss()(model(fake), y)
        fake_dy_dx = torch.autograd.grad(dummy, model.parameters(), create_graph=True)
        err = rec_mod.loss_inverting_gt(observed, fake_dy_dx, fake, args.tv)
        their_params = dict(theirs.named_parameters())
        g_theirs = torch.autograd.grad(err, [their_params[authors_name(n, ours.resolution)]
                                             for n, _ in ours.named_parameters()])
        ours.load_state_dict(state)  # both forwards advanced their spectral-norm vectors alike
        diff = abs(float(mine.detach()) - float(err.detach()))
        g1 = torch.cat([g.reshape(-1) for g in g_mine])
        g2 = torch.cat([g.reshape(-1) for g in g_theirs])
        rel_g = float((g1 - g2).norm() / g2.norm().clamp_min(1e-300))
        img = float((x.detach() - fake.detach()).abs().max())
        worst_loss, worst_grad = max(worst_loss, diff), max(worst_grad, rel_g)
        print(f"  point {point}: ours {float(mine.detach()):.15e}  authors {float(err.detach()):.15e}  |diff| {diff:.1e}  "
              f"generator-gradient rel diff {rel_g:.2e}  images max |diff| {img:.1e}")
    return worst_loss, worst_grad


def authors_run(gen_mod, cfg_mod, model, obs, y, seed: int, args) -> tuple[torch.Tensor, float]:
    config = dict(cfg_mod.config)
    config.update(device=torch.device("cpu"), nz=128, b_size=args.batch_size, total_img=args.batch_size,
                  num_epochs=args.iterations, rep_freq=args.iterations, lr=1e-3, tv_value=args.tv,
                  signed=True, lr_decay=False, dst="cifar10")
    observed = [obs.gradients[n].clone() for n, _ in model.named_parameters()]
    torch.manual_seed(seed)
    attacker = gen_mod.CI_attacker(config)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its whole config
        recon = attacker.reconstructed_gt(observed, y, model)
    return recon[-1].double(), time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--authors-repo", type=Path, required=True, help="checkout of github czhang024/CI-Net")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--activation", default="sigmoid", choices=["sigmoid", "relu"])
    ap.add_argument("--tv", type=float, default=0.0, help="TV weight in both (the authors' default 0)")
    ap.add_argument("--points", type=int, default=4, help="generator weight points of the loss check")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--loss-tol", type=float, default=1e-12,
                    help="largest absolute difference of the two losses (1 - cos, float64)")
    ap.add_argument("--grad-tol", type=float, default=1e-9,
                    help="largest relative difference of the two gradients w.r.t. the generator")
    ap.add_argument("--psnr-sigmas", type=float, default=3.0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_default_dtype(torch.float64)  # the authors' generator and latents in float64 too
    gen_mod, rec_mod = load_authors(args.authors_repo.resolve())
    cfg_mod = importlib.import_module("utils.config")
    spec, x01, y, model, obs, source = setting(args)
    print(f"setting: CIFAR-10 ({source}), B={args.batch_size}, FCNN 6x200 {args.activation}, float64, "
          f"labels given, {args.iterations} iterations, seeds {args.seeds}")
    worst_loss, worst_grad = check_loss(gen_mod, rec_mod, spec, y, model, obs, args)
    q = MetricConfig(lpips=False)
    ps_ours, ps_theirs, t_ours, t_theirs = [], [], [], []
    print(f"PSNR (dB) of the last iterate after {args.iterations} iterations:")
    for seed in args.seeds:
        t0 = time.perf_counter()
        rec = CINetAttack(max_iterations=args.iterations, dtype="float64", total_variation=args.tv,
                          progress=False).reconstruct(obs, generator=torch.Generator().manual_seed(seed))
        t_ours.append(time.perf_counter() - t0)
        ps_ours.append(image_quality(spec.denormalize(rec.inputs.double()), x01, q)["psnr_mean"])
        fake, dt = authors_run(gen_mod, cfg_mod, model, obs, y, seed, args)
        t_theirs.append(dt)
        ps_theirs.append(image_quality(spec.denormalize(fake), x01, q)["psnr_mean"])
        print(f"  seed {seed}: ours {ps_ours[-1]:.2f} ({t_ours[-1]:.1f} s)   authors {ps_theirs[-1]:.2f} "
              f"({t_theirs[-1]:.1f} s)")
    n = len(args.seeds)
    m1, m2 = statistics.mean(ps_ours), statistics.mean(ps_theirs)
    s1 = statistics.stdev(ps_ours) if n > 1 else 0.0
    s2 = statistics.stdev(ps_theirs) if n > 1 else 0.0
    se = math.sqrt((s1 ** 2 + s2 ** 2) / n)
    allowed = max(1.0, args.psnr_sigmas * se)
    print(f"  mean ± std: ours {m1:.2f} ± {s1:.2f}, authors {m2:.2f} ± {s2:.2f}; difference {m1 - m2:+.2f} dB "
          f"(allowed ±{allowed:.2f}: {args.psnr_sigmas:g} standard errors, at least 1 dB)")
    print(f"  time per iteration: ours {statistics.mean(t_ours) / args.iterations * 1e3:.1f} ms, "
          f"authors {statistics.mean(t_theirs) / args.iterations * 1e3:.1f} ms")
    ok_loss = worst_loss <= args.loss_tol and worst_grad <= args.grad_tol
    ok_psnr = abs(m1 - m2) <= allowed
    print(f"loss agreement: {'PASS' if ok_loss else 'FAIL'} (worst |diff| {worst_loss:.1e}, generator "
          f"gradient rel diff {worst_grad:.1e}); PSNR agreement: {'PASS' if ok_psnr else 'FAIL'}")
    return 0 if ok_loss and ok_psnr else 1


if __name__ == "__main__":
    raise SystemExit(main())
