"""Every knob of the config, declared once: its type, allowed range and meaning.

``ROOT`` holds the root keys of conf/config.yaml; ``DATASET``, ``THREAT`` and ``METRICS`` the keys
of those groups; ``MODELS`` and ``ATTACKS`` the knobs of each ``_target_`` (a pipeline's stages are
nodes with their own ``_target_``); ``DEFENSES`` the knobs of each defense ``name``.
``bench/run/config_check.py`` checks a run's config against these tables at start-up, before any data,
model or attack is touched, and refuses a key that is declared nowhere. A knob added to a yaml
without an entry here fails ``tests/unit/test_config_schema.py``.

Ranges are the values that mean something physically (a noise multiplier cannot be negative, a
clip norm must be positive) and an upper bound past which a value is a typo (10^12 iterations).
``zero``/``null`` say what 0 or null mean where they are allowed; a value without a declared
meaning is refused rather than reinterpreted.
"""
from __future__ import annotations

import math

from bench.run.knobs import BIG, HUGE, SECONDS, THREADS, Bool, Choice, Float, Int, Knob, Node, Text  # noqa: F401

__all__ = ["Knob", "ROOT", "STRUCTURAL", "DATASET", "THREAT", "METRICS", "MODELS", "ATTACKS",
           "DEFENSES", "Int", "Float", "Bool", "Choice", "Text", "Node"]

NAME = r"[A-Za-z0-9][A-Za-z0-9_.+-]*"   # a file-name component: rows go to results/raw/<name>/
SEED = Int(0, 2**32 - 1, "random seed", zero="seed 0, as any other")
THREADS_KNOB = Int(1, THREADS, "torch intra-op threads while the attack runs",
                   null="leave PyTorch's setting")
ATTACK_DTYPE = Choice("float32", "float64", help="precision of the attack's optimisation")
PROGRESS = Bool("progress bar when stderr is a terminal")
BUDGET = Float(0, SECONDS, "seconds a reconstruct call without a deadline may run", lo_open=True,
               null="no limit")
LAYER = Knob("layer", "attacked nn.Linear by name", null="the first nn.Linear")
LR = Float(0, 1e3, "learning rate", lo_open=True)
ITERATIONS = Int(1, BIG, "optimisation steps (the budget knob)")
WEIGHT = Float(0, HUGE, "weight of a loss term (0: term off)", zero="the term is off")
CHECK_EVERY = Int(1, BIG, "iterations between two looks at the deadline")
TEMPERATURE = Float(0, 80, "temperature of exp(T |cos|) (float32 overflows past T = 88)", lo_open=True)

# ---------------------------------------------------------------------- root and plain groups
ROOT = {
    "name": Text("experiment name: rows go to results/raw/<name>/", pattern=NAME),
    "profile": Text("budget profile: conf/profile/<profile>.yaml, budgets in "
                    "conf/budget/<experiment>/<profile>.yaml", pattern=NAME),
    "seed": SEED,
    "n_batches": Int(1, 10**7, "batches per run", zero="nothing to do: exit 2, no rows written"),
    "batch_size": Int(1, 10**5, "samples per client batch"),
    "device": Knob("device", "where the client and the attacks run (auto: CUDA when present)"),
    "dtype": Choice("float32", "float64", help="client gradient and SPEAR precision (float16/bfloat16 "
                    "lose the precision the attacks rely on)"),
    "time_budget_s": Float(0, SECONDS, "per-batch deadline handed to every attack", lo_open=True,
                           null="no run deadline: each attack's own attack.time_budget_s applies"),
    "retry_errors": Bool("resume recomputes batches whose row is an error"),
    "save_images": Int(0, 10**6, "thumbnails of the first k batches", zero="no thumbnails"),
    "progress": PROGRESS,
}
# Root keys that hold structure, not values: the logger and the paths (no numbers that change a
# result), hydra's own node, and the names of global config groups should one appear at the root.
STRUCTURAL = frozenset({"logger", "paths", "hydra", "experiment", "budget", "local"})

DATASET = {
    "name": Choice("mnist", "cifar10", "tiny_imagenet", "imagenet224", "imagenet720", "adult",
                   help="dataset (datasets/registry.py)"),
    "allow_standin": Bool("offline: fall back to a stand-in, marked in every row"),
    "prefer": Choice("real", "standin", help="real | standin (skip the real files)"),
    "balanced": Bool("class-balanced batches"),
    "label_homogeneous": Bool("every sample of a batch has the same label",
                              null="ordinary batches, label_homogeneous not recorded"),
    "standin.per_picture": Int(1, 10**4, "crops per bundled photograph"),
    "standin.seed": SEED,
    "standin.n_records": Int(1, 10**7, "synthetic records in the tabular stand-in pool"),
}

THREAT = {
    "loss": Choice("cross_entropy", help="the client's loss (bench/client/fedsgd.py LOSSES)"),
    "labels_known": Bool("the server learns the labels"),
    "batch_size_known": Bool("the server learns the batch size"),
}

METRICS = {
    "psnr_cap_db": Float(0, 1000, "PSNR of an exact image (MSE floor)", lo_open=True),
    "exact_psnr_db": Float(0, 1000, "PSNR at or above which an image counts as exact", lo_open=True),
    "lpips": Bool("LPIPS of matched images"),
}

# ---------------------------------------------------------------------- models (by _target_)
_MODEL_NAME = Text("label of the model in rows and tables", pattern=NAME)
_WEIGHTS = Text("state_dict file (torch.save)", null="untrained")
MODELS = {
    "bench.run.models.fcnn": {
        "name": _MODEL_NAME,
        "width": Int(1, 10**5, "neurons per hidden layer"),
        "depth": Int(2, 100, "linear layers"),
        "activation": Choice("relu", "sigmoid", "tanh", "leaky_relu", help="activation between layers"),
        "init": Choice("default", "normal", help="default: PyTorch's Kaiming-uniform"),
    },
    "bench.run.models.small_cnn": {
        "name": _MODEL_NAME,
        "channels": Knob("ints", "channels of each conv stage", lo=1, hi=4096),
        "hidden": Int(1, 10**5, "width of the first classifier layer"),
        "weights": _WEIGHTS,
    },
    "bench.run.models.vgg16": {
        "name": _MODEL_NAME,
        "weights": _WEIGHTS,
        "batch_norm": Bool("VGG-16 with batch norm"),
    },
}

# ---------------------------------------------------------------------- attacks (by _target_)
SPEAR = {
    "layer": LAYER,
    "features_only": Bool("return a deeper layer's recovered inputs instead of raising"),
    "search": Choice("sampling", "l1", "dictionary", "guided", help="direction finder"),
    "l1_starts": Int(1, 10**6, "l1 starts per step"),
    "l1_iters": Int(1, 10**4, "IRLS iterations"),
    "l1_rows": Int(0, 10**7, "rows sampled before the search", zero="search the whole column space"),
    "l1_deflate": Float(0, 1, "share of starts deflated against found directions", zero="no deflation"),
    "l1_neighbours": Int(0, 10**7, "2-D kernels from found zero sets per step", zero="no neighbour search"),
    "templates": Bool("template completion of look-alike samples"),
    "proposals_per_step": Int(1, 10**7, "submatrices evaluated together", null="sized to the device"),
    "max_proposals": Int(1, 10**13, "proposal cap", null="no cap besides the deadline"),
    "tau": Float(0, 1, "sparsity filter: share of live rows that must be zero",
                 zero="only B - 1 + min_extra_zeros zeros are required"),
    "min_extra_zeros": Int(0, 10**6, "zeros beyond B-1 a proposal needs", zero="B-1 zeros suffice"),
    "zero_tol": Float(0, 1, "relative tolerance of an exact zero", lo_open=True, hi_open=True,
                      null="from the client dtype"),
    "rank_tol": Float(0, 1, "relative singular-value cut for the batch size", lo_open=True, hi_open=True,
                      null="eps^(2/3) of the client dtype"),
    "dedup_cos": Float(0, 1, "|cos| above which two directions are one", lo_open=True),
    "min_singular": Float(0, 1, "smallest singular value of a selected set of unit directions",
                          lo_open=True, hi_open=True),
    "fragile_leverage": Float(0, 1, "leverage above which a proposal hinges on one row", lo_open=True,
                              null="1 - max(1e-6, zero_tol)"),
    "reject_mixtures": Bool("reject proposals that mix two directions"),
    "residual_tol": Float(0, 1, "a-posteriori check: relative gradient residual allowed", lo_open=True,
                          hi_open=True, null="from the client dtype"),
    "second_stage": Bool("two-stage greedy selection"),
    "sampling": Choice("uniform", "adaptive", help="row sampling of the sampling finder"),
    "factorization": Choice("auto", "svd", "randomized", help="factorisation of dL/dW"),
    "stall_s": Float(0, SECONDS, "seconds without progress before the stall rule stops", lo_open=True,
                     null="no stall rule"),
    "device": Knob("device", "where the search runs (auto: the gradient's device)"),
    "threads": THREADS_KNOB,
    "noise_aware": Bool("noise-aware rank and zero thresholds"),
    "noise_kappa": Float(0, 1e3, "noise-aware zero test: multiple of the noise std", lo_open=True),
    "progress": PROGRESS,
    "time_budget_s": BUDGET,
    "dict_starts": Int(1, 10**6, "dictionary finder: random starts per step"),
    "dict_iters": Int(0, 10**5, "subgradient iterations per start", zero="rounding of the starts only"),
    "dict_step": Float(0, math.pi, "initial step (radians)", lo_open=True),
    "dict_decay": Float(0, 1, "geometric step decay per iteration", lo_open=True),
    "dict_rounds": Knob("floats", "null-space rounding: rows as multiples of B", lo=0, hi=1e3, lo_open=True),
    "dict_deflate": Bool("later starts orthogonal to found directions"),
    "dict_local_dim": Int(1, 10**6, "neighbour search null-space dimension", null="sqrt(m_live)"),
    "dict_local_starts": Int(0, 10**6, "l1 starts per neighbour null space", zero="global search only"),
    "guide": Node({"attacks.pipelines.GeipingPrior": {
        "iterations": Int(1, BIG, "Geiping iterations for the guided finder's prior"),
        "restarts": Int(1, 10**4, "restarts of the prior"),
    }}, "the guided finder's prior (an optimisation attack's estimate of the inputs)", null="no prior"),
    "guide_pool": Float(0, 1, "share of a sample's negative predictions rows are drawn from", lo_open=True),
    "guide_dictionary": Bool("every other guided step runs the dictionary finder"),
}

GEIPING = {
    "max_iterations": ITERATIONS,
    "restarts": Int(1, 10**4, "independent restarts (best by matching loss)"),
    "lr": LR,
    "optimizer": Choice("adam", "sgd", help="optimiser"),
    "lr_decay": Bool("MultiStepLR at lr_milestones"),
    "lr_milestones": Knob("floats", "milestones as shares of max_iterations", lo=0, hi=1, lo_open=True,
                          hi_open=True),
    "lr_gamma": Float(0, 1, "step-size factor at each milestone", lo_open=True),
    "signed": Bool("signed gradients"),
    "boxed": Bool("clamp to the valid pixel box"),
    "cost_fn": Choice("sim", "l2", help="gradient distance"),
    "indices": Text("parameter tensors matched", pattern=r"def|(top|first|last)[1-9]\d*"),
    "layer_weights": Choice("equal", "linear", "exp", help="weights of the layers"),
    "total_variation": WEIGHT,
    "tv_space": Choice("normalized", "pixel", help="space the TV prior is taken in"),
    "init": Choice("randn", "rand", "zeros", help="start of each restart"),
    "dtype": ATTACK_DTYPE,
    "fast_linear": Bool("nn.Linear terms via Gram identities"),
    "label_probes": Int(1, 10**6, "probe inputs for label counting"),
    "threads": THREADS_KNOB,
    "progress": PROGRESS,
    "time_budget_s": BUDGET,
}

CPA = {
    "layer": LAYER,
    "iterations": ITERATIONS,
    "lr": LR,
    "ne": WEIGHT,
    "a": Float(0, 1e3, "log cosh contrast parameter", lo_open=True),
    "decor": WEIGHT,
    "T": TEMPERATURE,
    "tv": WEIGHT,
    "decor_emb": WEIGHT,
    "T_emb": TEMPERATURE,
    "nv": WEIGHT,
    "l1": WEIGHT,
    "source": Choice("auto", "image", "embedding", help="what the sources are"),
    "sign_scale": Choice("bias", "minmax", help="how sign and scale are resolved"),
    "dtype": ATTACK_DTYPE,
    "check_every": CHECK_EVERY,
    "threads": THREADS_KNOB,
    "progress": PROGRESS,
    "time_budget_s": BUDGET,
}

FEATURE_INVERSION = {
    "iterations": ITERATIONS,
    "lr": LR,
    "schedule": Choice("cosine", "constant", help="step-size schedule"),
    "fi": Float(0, HUGE, "feature-matching weight", lo_open=True),
    "tv": WEIGHT,
    "dtype": ATTACK_DTYPE,
    "check_every": CHECK_EVERY,
    "threads": THREADS_KNOB,
    "progress": PROGRESS,
    "time_budget_s": BUDGET,
}

TABLEAK = {
    "restarts": Int(1, 10**4, "independent reconstructions pooled"),
    "iterations": ITERATIONS,
    "lr": LR,
    "init_scale": Float(0, 1e3, "uniform initialisation U[-s, s]", lo_open=True),
    "temperature": Float(0, 1e3, "softmax temperature of one-hot blocks", lo_open=True),
    "sign_trick": Bool("Adam on the sign of the gradient"),
    "softmax_trick": Bool("one-hot blocks as a softmax"),
    "sigmoid_trick": Bool("continuous columns squashed into their range"),
    "pooling": Choice("median+softmax", "best", help="how restarts are pooled"),
    "match_tolerance": Float(0, 1e3, "tolerance in standard deviations when matching", lo_open=True),
    "label_dummies": Int(1, 10**7, "dummy inputs for the label-count estimate"),
    "dtype": ATTACK_DTYPE,
    "num_threads": THREADS_KNOB,
    "progress": PROGRESS,
    "time_budget_s": BUDGET,
}

CI_NET = {  # conf/attack/ci_net.yaml (attacks/ci_net.py::CINetConfig)
    "max_iterations": ITERATIONS,
    "lr": LR,
    "beta1": Float(0, 1, "Adam beta1", hi_open=True, zero="no first-moment averaging"),
    "beta2": Float(0, 1, "Adam beta2", hi_open=True, zero="no second-moment averaging"),
    "signed": Bool("Adam on the sign of the gradient"),
    "total_variation": WEIGHT,
    "latent_dim": Int(1, 10**5, "generator input code per sample"),
    "start_width": Int(1, 10**5, "generator channels at the start of the over-parameterisation rule"),
    "overparam_factor": Float(0, 1e3, "generator parameters per pixel of the batch", lo_open=True),
    "width": Int(4, 10**5, "fixed generator width (channels)", null="the over-parameterisation rule"),
    "fit": Choice("crop", "resize", help="how the generator's output meets the image size"),
    "output": Choice("last", "best_loss", help="which iterate is reported"),
    "dtype": ATTACK_DTYPE,
    "label_probes": Int(1, 10**6, "probe inputs for label counting"),
    "threads": THREADS_KNOB,
    "progress": PROGRESS,
    "time_budget_s": BUDGET,
}

_STAGE1 = {"attacks.spear.SpearAttack": SPEAR, "attacks.cpa.CpaAttack": CPA}
_PIPELINE = {
    "stage1": Node(_STAGE1, "stage 1: recovers the attacked layer's inputs"),
    "fi": Node({"attacks.feature_inversion.FeatureInversion": FEATURE_INVERSION}, "feature inversion"),
    "refine": Node({"attacks.geiping.GeipingAttack": GEIPING}, "refinement from the FI images",
                   null="stop after feature inversion"),
    "threads": THREADS_KNOB,
    "time_budget_s": BUDGET,
}
ATTACKS = {
    **_STAGE1,
    "attacks.geiping.GeipingAttack": GEIPING,
    "attacks.tableak.TabLeakAttack": TABLEAK,
    "attacks.ci_net.CINetAttack": CI_NET,
    "attacks.pipelines.SpearFiGeiping": _PIPELINE,
    "attacks.pipelines.CpaFiGeiping": _PIPELINE,
}

# Every attack's row label (conf/attack/*.yaml `name:`), pipeline stages included.
ATTACK_NAME = Text("row label: the attack column of rows and tables", pattern=NAME)
for _table in ATTACKS.values():
    _table.setdefault("name", ATTACK_NAME)

# ---------------------------------------------------------------------- defenses (by name)
_KNOWS = Bool("the server knows the defense's parameters (in Observation.update_meta)")
DEFENSES = {
    "none": {},
    "dp_sgd": {
        "clip": Float(0, HUGE, "C: per-sample L2 clipping norm", lo_open=True),
        "noise_multiplier": Float(0, HUGE, "sigma: Gaussian noise std sigma*C on the clipped sum",
                                  zero="no noise (clipping only; epsilon = inf)"),
        "delta": Float(0, 1, "delta of the (epsilon, delta) guarantee", lo_open=True, hi_open=True),
        "dataset_size": Int(1, 10**10, "training-set size: sampling rate B / dataset_size"),
        "sample_rate": Float(0, 1, "Poisson sampling rate q", lo_open=True, null="B / dataset_size"),
        "rounds": Int(1, BIG, "DP-SGD steps the accountant counts"),
        "server_knows": _KNOWS,
    },
    "fedavg": {
        "epochs": Int(1, 10**4, "local epochs"),
        "local_batch": Int(1, 10**5, "local mini-batch size", null="the whole batch: one step per epoch"),
        "lr": Float(0, 1e3, "local SGD learning rate", lo_open=True),
        "shuffle": Bool("fresh sample order every epoch"),
        "client": Choice("harness", "flower", help="who computes the update"),
        "server_knows": _KNOWS,
    },
    "aggregate": {
        "clients": Int(1, 10**5, "clients whose updates the server sees summed"),
    },
    "prune": {
        "keep": Float(0, 1, "share of entries kept per tensor (1: nothing pruned)", lo_open=True),
        "server_knows": _KNOWS,
    },
    "quantize": {
        "bits": Int(2, 64, "bits per entry (2: sign and one level)"),
        "server_knows": _KNOWS,
    },
}
