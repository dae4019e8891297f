"""SPEAR's engine parts: the randomized factorisation against a full SVD, the l1 finder against
the paper's sampling finder, the mixture resolution, and the device/batch-size logic of the
CUDA path (exercised on the CPU)."""
from __future__ import annotations

import math

import pytest
import torch

from attacks.base import AttackNotApplicable
from attacks.layers import numerical_rank
from attacks.spear import SpearAttack, SpearConfig, spear_core
from attacks.spear import engine as spear_engine
from attacks.spear.factorisation import full_svd, low_rank_factors, randomized
from attacks.spear.filtering import Candidates
from attacks.spear.finders import SearchState
from attacks.spear.finders.l1 import L1Search, round_to_proposals
from bench.scoring.metrics import image_quality
from tests.helpers import observe, paper_fcnn, real_batch


def _noisy_low_rank(m, n, r, dtype, seed, noise=None):
    g = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(m, r, generator=g, dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(n, r, generator=g, dtype=torch.float64))[0]
    S = torch.logspace(0, -4, r, dtype=torch.float64)  # spread singular values, like real batches
    A = (U * S) @ V.T
    if noise is not None:
        A = A + noise * torch.randn(m, n, generator=g, dtype=torch.float64)
    return A.to(dtype), U


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(60, 3000), (400, 300)])
def test_randomized_factorisation_matches_full_svd(dtype, shape):
    """Rounding noise of the client's dtype (float32: the product is formed in float32)."""
    m, n = shape
    A, U_true = _noisy_low_rank(m, n, 12, dtype, seed=m)
    full = full_svd(A)
    before = A.clone()
    rnd = randomized(A, client_dtype=dtype, k0=4)  # starts too small: must grow k itself
    assert torch.equal(A, before)  # the gradient is read, never written
    assert rnd is not None and rnd.path == "randomized"
    r_full = numerical_rank(full.S, dtype)
    r_rnd = numerical_rank(rnd.S, dtype)
    assert r_full == r_rnd == 12
    # same leading subspace: principal angles ~ rounding of the dtype
    P_full = full.U[:, :12] @ full.U[:, :12].T
    P_rnd = rnd.U[:, :12] @ rnd.U[:, :12].T
    tol = 1e-9 if dtype == torch.float64 else 1e-3
    assert float((P_full - P_rnd).norm()) < tol
    assert torch.allclose(rnd.S[:12], full.S[:12], rtol=tol * 10)
    # R = Σ Vᵀ reproduces A within the dtype's rounding
    rec = (rnd.U[:, :12] * rnd.S[:12]) @ rnd.Vh[:12]
    assert float((rec - A.double()).norm() / A.double().norm()) < (1e-12 if dtype == torch.float64 else 1e-5)


def test_randomized_falls_back_when_noise_hides_the_rank():
    """Noise far above the rank tolerance: the range finder grows to full width and still
    reproduces the matrix (residual ~ eps), so the rank reads full, as with a full SVD."""
    A, _ = _noisy_low_rank(50, 2000, 5, torch.float64, seed=1, noise=1e-3)
    f = low_rank_factors(A, path="randomized")
    assert numerical_rank(f.S, torch.float64) == numerical_rank(full_svd(A).S, torch.float64) == 50


def test_auto_picks_the_randomized_path_for_big_layers(monkeypatch):
    A, _ = _noisy_low_rank(30, 500, 4, torch.float64, seed=2)
    assert low_rank_factors(A).path == "svd"
    monkeypatch.setattr("attacks.spear.factorisation.SMALL", 100)
    f = low_rank_factors(A)
    assert f.path == "randomized" and f.residual < 1e-12


def test_randomized_spear_equals_svd_spear_on_a_real_batch():
    spec, x01, y = real_batch("cifar10", 6)
    model = paper_fcnn(spec)
    obs = observe(model, spec, x01, y)
    out = {}
    for path in ("svd", "randomized"):
        rec = SpearAttack(progress=False, factorization=path).reconstruct(
            obs, generator=torch.Generator().manual_seed(0))
        assert rec.status == "ok" and rec.diagnostics["factorization"] == path
        out[path] = image_quality(spec.denormalize(rec.inputs), x01)
    assert out["randomized"]["psnr_min"] >= 100 and out["svd"]["psnr_min"] >= 100


@pytest.mark.parametrize("dataset,B", [("cifar10", 8), ("mnist", 12)])
def test_l1_finder_returns_the_same_directions_as_sampling(dataset, B):
    """The fast finder and the paper's finder disaggregate the same batch identically."""
    spec, x01, y = real_batch(dataset, B, seed=3)
    model = paper_fcnn(spec, seed=3)
    obs = observe(model, spec, x01, y)
    recs = {s: SpearAttack(progress=False, search=s).reconstruct(obs, generator=torch.Generator().manual_seed(1))
            for s in ("sampling", "l1")}
    for s, rec in recs.items():
        assert rec.status == "ok", (s, rec.diagnostics)
    qa = image_quality(spec.denormalize(recs["sampling"].inputs), x01)
    qb = image_quality(spec.denormalize(recs["l1"].inputs), x01)
    a = recs["sampling"].inputs[qa["rec_for_true"]].reshape(B, -1)
    b = recs["l1"].inputs[qb["rec_for_true"]].reshape(B, -1)
    assert float((a - b).abs().max()) < 1e-8
    # and l1 needed far fewer proposals than sampling's expectation 2^(B-1) H_B
    assert recs["l1"].diagnostics["proposals"] < 2 ** (B - 1) * sum(1 / k for k in range(1, B + 1))


def _state(L, B, cands=None, seed=0):
    return SearchState(L, L.norm(dim=1), B, 1.5e-7, max(B + 2, 10), cands or Candidates(B, 1 - 1e-9),
                       torch.Generator().manual_seed(seed), 64)


def _planted(m, B, rho, seed):
    """L = D Q⁻¹ with D Bernoulli(rho)-Gaussian: the columns of D are the sparse directions."""
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(m, B, generator=g, dtype=torch.float64) * (torch.rand(m, B, generator=g) < rho)
    D = D[(D != 0).any(1)]  # live rows only, as the engine hands them to a finder
    Q = torch.randn(B, B, generator=g, dtype=torch.float64)
    return D @ torch.linalg.inv(Q), Q / Q.norm(dim=0, keepdim=True)


def test_l1_search_finds_planted_sparse_directions():
    L, Qn = _planted(200, 12, 0.5, seed=4)
    q, cost = L1Search(starts=64).propose(_state(L, 12))
    assert cost == 64
    cos = (q @ Qn).abs().amax(0)  # best proposal per true direction
    assert int((cos > 1 - 1e-9).sum()) >= 6  # one batch of 64 starts finds many columns exactly


def test_rounding_resolves_a_mixture_into_both_directions():
    """An approximate direction that is a mixture of two samples' directions (its smallest
    entries are the rows inactive for both) is split into the two exact directions."""
    m, B = 300, 10
    L, Qn = _planted(m, B, 0.5, seed=5)
    D = L @ Qn
    both = (D[:, 0].abs() < 1e-12) & (D[:, 1].abs() < 1e-12)
    assert int(both.sum()) >= B + 2  # enough common zero rows for the construction
    mix = (Qn[:, 0] + 0.7 * Qn[:, 1])[None]
    mix = mix / mix.norm()
    Lt = L / L.norm(dim=1, keepdim=True)
    props, ok = round_to_proposals(L, Lt, mix, B, 1.5e-7)
    got = (props[ok] @ Qn[:, :2]).abs()
    assert got.shape[0] == 2 and bool((got.amax(0) > 1 - 1e-9).all())


def test_deflated_starts_are_orthogonal_to_found_directions_in_whitened_coordinates():
    L, Qn = _planted(200, 8, 0.5, seed=6)
    cands = Candidates(8, 1 - 1e-9)
    for j in range(3):
        cands.add(Qn[:, j], torch.ones(L.shape[0], dtype=torch.bool), 0)
    f = L1Search(starts=40, deflate=0.5)
    st = _state(L, 8, cands)
    _, A, Rm = f._basis(st)
    u = f._starts(st, 40, Rm)
    F = Qn[:, :3].T @ Rm.T  # found directions, whitened
    assert float((u[:20] @ F.T).abs().max()) < 1e-10  # the deflated half
    assert float((u[20:] @ F.T).abs().max()) > 1e-3  # the rest are plain random starts


def test_proposal_batch_is_sized_to_cuda_memory(monkeypatch):
    cfg = SpearConfig(proposals_per_step=None)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8 * 2**30, 80 * 2**30))
    small = spear_engine.proposals_per_step(cfg, torch.device("cuda"), 200, 20)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (80 * 2**30, 80 * 2**30))
    big = spear_engine.proposals_per_step(cfg, torch.device("cuda"), 200, 20)
    assert 1024 <= small < big <= 65536
    assert spear_engine.proposals_per_step(SpearConfig(proposals_per_step=300), torch.device("cuda"), 200, 20) == 300
    assert spear_engine.proposals_per_step(cfg, torch.device("cpu"), 200, 20) == 4096


def test_search_device_and_foreign_generator_path():
    """device='cpu' explicitly, with the search generator derived from the caller's (the path a
    CUDA search takes: the caller's CPU generator seeds a device generator)."""
    spec, x01, y = real_batch("cifar10", 5)
    obs = observe(paper_fcnn(spec), spec, x01, y)
    cfg = SpearConfig(progress=False, device="cpu")
    assert spear_engine.search_device(cfg, obs.gradients["1.weight"]).type == "cpu"
    assert spear_engine.search_device(SpearConfig(device="cuda:0"), torch.zeros(1)).type == "cuda"
    rec = SpearAttack(progress=False, device="cpu").reconstruct(obs, generator=torch.Generator().manual_seed(0))
    assert rec.status == "ok" and rec.diagnostics["device"] == "cpu"


def test_stated_batch_size_below_rank_is_not_applicable_at_once():
    spec, x01, y = real_batch("cifar10", 10)
    model = paper_fcnn(spec)
    obs = observe(model, spec, x01, y)
    dW, db = obs.gradients["1.weight"], obs.gradients["1.bias"]
    with pytest.raises(AttackNotApplicable, match="rank 10 > stated batch size 8"):
        spear_core(model[1].weight, model[1].bias, dW, db, batch_size=8,
                   generator=torch.Generator().manual_seed(0), config=SpearConfig(progress=False))


def test_too_few_live_neurons_is_not_applicable_with_the_reason():
    spec, x01, y = real_batch("cifar10", 15)
    model = paper_fcnn(spec, width=16)
    obs = observe(model, spec, x01, y)
    with pytest.raises(AttackNotApplicable, match="live .* zero rows"):
        SpearAttack(progress=False).reconstruct(obs, generator=torch.Generator().manual_seed(0))


def test_bad_knobs_name_the_key():
    with pytest.raises(ValueError, match="attack.search"):
        SpearConfig(search="magic")
    with pytest.raises(ValueError, match="attack.factorization"):
        SpearConfig(factorization="qr")


def _true_state(B, seed=0, width=200):
    """A real batch's live L, W Rᵀ, bias and its true unit directions (from an exact SPEAR run)."""
    from attacks.spear.factorisation import full_svd

    spec, x01, y = real_batch("cifar10", B, seed=seed)
    model = paper_fcnn(spec, width=width, seed=seed)
    obs = observe(model, spec, x01, y)
    W, b = model[1].weight.detach(), model[1].bias.detach()
    dW = obs.gradients["1.weight"]
    U, S, Vh = full_svd(dW)
    L, R = U[:, :B] * S[:B].sqrt(), Vh[:B] * S[:B].sqrt()[:, None]
    X = spec.normalize(x01).reshape(B, -1)
    Qtrue = torch.linalg.lstsq(X.T, R.T).solution.T  # R = Q Xᵀ
    live = L.norm(dim=1) > 1e-12 * L.norm(dim=1).max()
    Qn = Qtrue / Qtrue.norm(dim=0, keepdim=True)
    st = _state(L[live], B)
    st.WR, st.bias, st.db = (W @ R.T)[live], b[live], obs.gradients["1.bias"][live]
    return st, Qn


@pytest.mark.parametrize("missing", [1, 2])
def test_completion_recovers_the_last_samples_from_the_dual_basis(missing):
    from attacks.spear.finders.completion import completion_proposals

    B = 10
    st, Qn = _true_state(B)
    for j in range(B - missing):
        st.cands.add(Qn[:, j], torch.ones(st.L.shape[0], dtype=torch.bool), 0)
    props = completion_proposals(st)
    cos = (props @ Qn[:, B - missing:]).abs().amax(0)
    assert bool((cos > 1 - 1e-9).all()), cos
    # with nothing missing, or too much missing, it proposes nothing
    st.cands = Candidates(B, 1 - 1e-9)
    assert len(completion_proposals(st)) == 0


def test_neighbour_kernels_find_a_look_alike_sample():
    """Two near-identical pictures: their zero sets overlap almost entirely, the case where l1
    starts confuse them; B-2 rows from the found one's zero set split the plane into both."""
    from attacks.spear.finders.l1 import neighbour_proposals

    B = 8
    spec, x01, y = real_batch("cifar10", B, seed=1)
    x01 = x01.clone()
    x01[1] = (0.9 * x01[0] + 0.1 * x01[1]).clamp(0, 1)  # sample 1 looks like sample 0
    model = paper_fcnn(spec, seed=1)
    obs = observe(model, spec, x01, y)
    from attacks.spear.factorisation import full_svd

    dW = obs.gradients["1.weight"]
    U, S, Vh = full_svd(dW)
    L, R = U[:, :B] * S[:B].sqrt(), Vh[:B] * S[:B].sqrt()[:, None]
    X = spec.normalize(x01).reshape(B, -1)
    Q = torch.linalg.lstsq(X.T, R.T).solution.T
    Qn = Q / Q.norm(dim=0, keepdim=True)
    st = _state(L, B)
    z0 = (L @ Qn[:, 0]).abs() <= 1.5e-7 * L.norm(dim=1)
    st.cands.add(Qn[:, 0], z0, 0)
    props = neighbour_proposals(st, L / L.norm(dim=1, keepdim=True), 256)
    D = L @ Qn
    only1 = int(((D[:, 1].abs() <= 1e-9 * D[:, 1].abs().max()) & (D[:, 0].abs() > 1e-9 * D[:, 0].abs().max())).sum())
    assert only1 >= 2  # the construction: a few neurons are off for sample 1 but on for sample 0
    assert len(props) and float((props @ Qn[:, 1]).abs().max()) > 1 - 1e-9


@pytest.mark.parametrize("missing", [1, 2])
def test_completion_builds_on_the_confirmed_directions_when_mixtures_crowd_the_candidates(missing):
    """More candidates than samples (spurious mixtures among them): the complement of all of them
    is empty, so completion must use the directions the last sign check confirmed."""
    from attacks.spear.finders.completion import completion_proposals

    B = 10
    st, Qn = _true_state(B)
    m = st.L.shape[0]
    true_mask = torch.ones(m, dtype=torch.bool)
    true_mask[0] = False
    for j in range(B - missing):
        st.cands.add(Qn[:, j], true_mask, 0)
    g = torch.Generator().manual_seed(1)
    for _ in range(missing + 1):  # mixtures of a found and a missing sample
        mix = Qn[:, 0] + torch.rand(1, generator=g, dtype=torch.float64) * Qn[:, B - 1]
        # (zero counts above the true ones': the sparsest-first trusted set takes them too)
        st.cands.add(mix / mix.norm(), torch.ones(m, dtype=torch.bool), 0)
    def found_all(props):
        return len(props) and bool(((props @ Qn[:, B - missing:]).abs().amax(0) > 1 - 1e-9).all())

    assert len(st.cands) > B - 1 and not found_all(completion_proposals(st))
    st.confirmed = list(range(B - missing))
    props = completion_proposals(st)
    cos = (props @ Qn[:, B - missing:]).abs().amax(0)
    assert bool((cos > 1 - 1e-9).all()), cos


@pytest.mark.parametrize("missing", [1, 2])
def test_completion_builds_on_the_sparsest_candidates_before_any_selection_is_checked(missing):
    """Mixtures (fewer zeros than any true direction, as measured) crowd the candidates and no
    selection has been checked yet (nothing confirmed): the trusted set -- sparsest first,
    well conditioned -- leaves them out, and its complement completes the batch."""
    from attacks.spear.filtering import zero_mask
    from attacks.spear.finders.completion import completion_proposals, trusted_order

    B = 10
    st, Qn = _true_state(B)
    for j in range(B - missing):
        st.cands.add(Qn[:, j], zero_mask(st.L, st.L_norm, Qn[:, j][None], st.zero_tol)[:, 0], 0)
    g = torch.Generator().manual_seed(1)
    for _ in range(missing + 1):
        mix = Qn[:, 0] + torch.rand(1, generator=g, dtype=torch.float64) * Qn[:, B - 1]
        mix = mix / mix.norm()
        st.cands.add(mix, zero_mask(st.L, st.L_norm, mix[None], st.zero_tol)[:, 0], 0)
    assert st.confirmed is None and len(st.cands) > B - 1
    assert sorted(trusted_order(st, B - 1)[: B - missing]) == list(range(B - missing))  # mixtures last
    props = completion_proposals(st)
    cos = (props @ Qn[:, B - missing:]).abs().amax(0)
    assert bool((cos > 1 - 1e-9).all()), cos


def test_pair_splitter_recovers_the_sample_hidden_in_a_mixture_with_a_found_look_alike():
    """A mixture of look-alikes u and a is zero on Z_u ∩ Z_a ⊂ Z_a; paired with the found q_a,
    its plane is span(q_u, q_a) and the split returns q_u exactly. Unrelated pairs are not split."""
    from attacks.spear.finders.pairs import PairSplitter

    m, B = 300, 12
    g = torch.Generator().manual_seed(3)
    D = torch.randn(m, B, generator=g, dtype=torch.float64) * (torch.rand(m, B, generator=g) < 0.5)
    u, a = 0, 1
    active_a = D[:, a] != 0
    # u is a look-alike of a: inactive where a is except on 10 rows, and on 40 rows of its own
    extra = active_a.nonzero().squeeze(1)[:40]
    differ = (~active_a).nonzero().squeeze(1)[:10]
    D[:, u] = torch.randn(m, generator=g, dtype=torch.float64) * active_a
    D[extra, u] = 0.0
    D[differ, u] = 1.0 + torch.rand(10, generator=g, dtype=torch.float64)
    Q = torch.randn(B, B, generator=g, dtype=torch.float64)
    L = D @ torch.linalg.inv(Q)
    Qn = Q / Q.norm(dim=0, keepdim=True)
    st = _state(L, B)
    Lt = L / L.norm(dim=1, keepdim=True)

    def zeros(q):
        return (Lt @ q).abs() <= 1e-9

    for j in range(1, B):  # everything but u found
        st.cands.add(Qn[:, j], zeros(Qn[:, j]), 0)
    splitter = PairSplitter()
    assert len(splitter.propose(st, Lt)) == 0  # true directions: no zero set inside another
    mix = Q[:, u] + 0.7 * Q[:, a]
    mix = mix / mix.norm()
    st.cands.add(mix, zeros(mix), 0)
    props = splitter.propose(st, Lt)
    assert len(props) and float((props @ Qn[:, u]).abs().max()) > 1 - 1e-9
    assert len(splitter.propose(st, Lt)) == 0  # each pair is split once


def _layer_with_a_sub_tolerance_gradient(B=6, m=120, n=40, seed=0):
    """``Z = W X + b`` with ``dL/dZ`` zero exactly where ReLU is off, except that sample 0's
    gradient through one clearly active neuron is 1e-9 of its largest: below float64's zero
    tolerance (1.5e-7), so the true answer carries one *soft* sign-check doubt."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(m, n, generator=g, dtype=torch.float64)
    b = torch.randn(m, generator=g, dtype=torch.float64)
    X = torch.randn(n, B, generator=g, dtype=torch.float64)
    Z = W @ X + b[:, None]
    D = torch.randn(m, B, generator=g, dtype=torch.float64) * (Z > 0)
    j = int(torch.argmax(Z[:, 0]))  # the most clearly active neuron of sample 0
    D[j, 0] = 1e-9 * float(D[:, 0].abs().max())
    return W, b, D @ X.T, D.sum(1), X.T, (j, 0)


def test_sign_violations_split_hard_from_soft_doubts():
    from attacks.spear.check import sign_violations

    W, b, dW, db, X, _ = _layer_with_a_sub_tolerance_gradient()
    B = X.shape[0]
    U, S, Vh = torch.linalg.svd(dW, full_matrices=False)
    L, R = U[:, :B] * S[:B].sqrt(), Vh[:B] * S[:B].sqrt()[:, None]
    Qtrue = torch.linalg.lstsq(X.T, R.T).solution.T  # R = Q Xᵀ (X: rows are samples)
    hard, soft = sign_violations(W @ R.T, b, L, Qtrue, 1.5e-7)
    assert hard.tolist() == [0] * B and soft.tolist() == [1] + [0] * (B - 1)
    mixed = Qtrue.clone()
    mixed[:, 1] = Qtrue[:, 1] + 0.5 * Qtrue[:, 2]  # a wrong disaggregation: gradient where ReLU is off
    hard, _ = sign_violations(W @ R.T, b, L, mixed, 1.5e-7)
    assert int(hard.sum()) > 0


def test_stall_rule_stops_on_a_true_answer_with_only_soft_doubts():
    """Without the rule the search runs to its deadline; with it, it stops after stall_s with the
    same (exact) inputs, status partial and the reason stated."""
    import time

    W, b, dW, db, X, _ = _layer_with_a_sub_tolerance_gradient()
    out = {}
    for stall in (None, 0.5):
        t0 = time.monotonic()
        out[stall] = spear_core(W, b, dW, db, batch_size=None, generator=torch.Generator().manual_seed(0),
                                config=SpearConfig(progress=False, stall_s=stall), deadline=t0 + 4.0)
    slow, fast = out[None], out[0.5]
    assert slow.diagnostics["timed_out"] == 1 and slow.diagnostics["stalled"] == 0
    assert fast.diagnostics["stalled"] == 1 and fast.diagnostics["timed_out"] == 0
    for res in (slow, fast):
        assert res.status == "partial" and res.diagnostics["check_violations_hard"] == 0
        dist = torch.cdist(res.inputs, X)
        assert float(dist.min(dim=1).values.max()) < 1e-8 * float(X.norm(dim=1).max())  # all exact
        doubted = (~res.sample_ok).nonzero().squeeze(1).tolist()
        assert len(doubted) == 1 and int(dist[doubted[0]].argmin()) == 0  # sample 0 is the doubt
    assert "stalled" in fast.diagnostics["reason"]
    with pytest.raises(ValueError, match="attack.stall_s"):
        SpearConfig(stall_s=0)


def test_template_completion_finds_hidden_look_alikes_beyond_the_pair_completion():
    """Five samples hidden, each the one of a look-alike pair (most shared inactive neurons) --
    more than the exact-scale completion's k <= 2 -- with every other true direction found: fitting
    the found samples' ReLU patterns inside the missing samples' affine input set recovers all five
    within a few calls (each hit joins the candidates, as in the engine). Pinned: CIFAR-10 stand-in
    pictures, B = 32, width 400, seed 0."""
    from attacks.spear.filtering import zero_mask
    from attacks.spear.finders.completion import completion_proposals
    from attacks.spear.finders.templates import TemplateCompletion

    B = 32
    st, Qn = _true_state(B, width=400)
    D = st.L @ Qn
    Z = (D.abs() <= 1.5e-7 * st.L_norm[:, None]).double()  # true zero sets (live rows, unit q)
    ov = Z.T @ Z
    ov.fill_diagonal_(0)
    missing: list[int] = []
    for i in (ov.max(1).values / Z.sum(0)).argsort(descending=True).tolist():
        if int(ov[i].argmax()) not in missing:
            missing.append(i)
        if len(missing) == 5:
            break
    for j in range(B):
        if j not in missing:
            st.cands.add(Qn[:, j], zero_mask(st.L, st.L_norm, Qn[:, j][None], st.zero_tol)[:, 0], 0)
    assert len(completion_proposals(st)) == 0  # k = 5: beyond the exact-scale completion
    tc = TemplateCompletion()
    Lt = st.L / st.L_norm[:, None]
    left = set(missing)
    for _ in range(30):
        props = tc.propose(st, Lt)
        if len(props):
            cos = (props @ Qn).abs().amax(0)
            for i in list(left):
                if cos[i] > 1 - 1e-9:
                    st.cands.add(Qn[:, i], zero_mask(st.L, st.L_norm, Qn[:, i][None], st.zero_tol)[:, 0], 0)
                    left.discard(i)
        if not left:
            break
    assert not left, f"not found: {sorted(left)} of {missing}"
