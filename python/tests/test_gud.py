"""Tests of the Python package against closed forms, the Rust binary and bad input.

Random tests use fixed seeds; a statistical tolerance is stated where one is used.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import gud

ROOT = pathlib.Path(__file__).resolve().parents[2]

FREE_FIELD = """
[data]
kind = "free-field"
size = 4
m2 = 0.5
samples = 512
seed = 1

[design]
mean = "zero"
basis = { kind = "fourier" }
prior = { kind = "free" }
schedule = { kind = "rg" }
"""


@pytest.fixture(scope="module")
def gaussian_design():
    # Gaussian data with unequal variances per site: the Gaussian score is exact for it
    rng = np.random.default_rng(0)
    data = rng.normal(size=(2048, 4, 4)) * np.linspace(0.5, 2.0, 16).reshape(4, 4)
    return gud.Design.fit(data, basis="fourier", prior="matched", schedule="cosine")


def gaussian_eps_numpy(design, chi, gamma):
    """eps_hat of the Gaussian score (SPEC section 4), in numpy."""
    a2 = 1.0 / (1.0 + np.exp(gamma))
    s2 = 1.0 / (1.0 + np.exp(-gamma))
    return np.sqrt(s2) * chi / (a2 * design.sigma_data + s2)


def gaussian_eps_vjp_numpy(design, chi, gamma, u):
    a2 = 1.0 / (1.0 + np.exp(gamma))
    s2 = 1.0 / (1.0 + np.exp(-gamma))
    return u * np.sqrt(s2) / (a2 * design.sigma_data + s2)


def gaussian_log_density(design, fields):
    """log N(phi; mu, U^T S Sigma S U) in phi-space."""
    chi = design.to_whitened(fields)
    sd = design.sigma_data
    return (
        -0.5 * np.sum(chi**2 / sd + np.log(2 * np.pi * sd), axis=1)
        - np.sum(np.log(design.scale))
    )


# --- designs ---------------------------------------------------------------------------


def test_design_schedule_identities(gaussian_design):
    d = gaussian_design
    t = np.linspace(0.05, 0.95, 7)
    g, a2, s2 = d.gamma(t), d.alpha_sq(t), d.sigma_sq(t)
    assert g.shape == (7, d.dim) and d.gamma(0.5).shape == (d.dim,)
    np.testing.assert_allclose(a2 + s2, 1.0, atol=1e-14)
    np.testing.assert_allclose(np.log(s2 / a2), g, atol=1e-10)
    np.testing.assert_allclose(d.snr(t), d.sigma_data * np.exp(-g), rtol=1e-12)
    # dgamma/dt against central differences
    h = 1e-5
    fd = (d.gamma(t + h) - d.gamma(t - h)) / (2 * h)
    np.testing.assert_allclose(d.dgamma_dt(t), fd, rtol=1e-6, atol=1e-6)


def test_design_transforms_round_trip_and_orthogonality(gaussian_design):
    d = gaussian_design
    phi = np.random.default_rng(1).normal(size=(5, 1, 4, 4))
    comp = d.to_components(phi)
    # U is orthogonal: |U (phi - mu)| = |phi - mu|
    centred = phi.reshape(5, -1) - d.mean
    np.testing.assert_allclose(np.linalg.norm(comp, axis=1), np.linalg.norm(centred, axis=1))
    np.testing.assert_allclose(d.from_components(comp), phi, atol=1e-12)
    chi = d.whiten(comp)
    np.testing.assert_allclose(chi * d.scale, comp, atol=1e-12)
    np.testing.assert_allclose(d.unwhiten(chi), comp, atol=1e-12)
    np.testing.assert_allclose(d.to_whitened(phi), chi, atol=1e-12)
    np.testing.assert_allclose(d.to_fields(chi), phi, atol=1e-12)
    # float32 input is accepted and converted
    np.testing.assert_allclose(d.to_whitened(phi.astype(np.float32)), chi, atol=1e-5)


def test_forward_noising_and_training_batch(gaussian_design):
    d = gaussian_design
    chi0 = np.random.default_rng(2).normal(size=(6, d.dim))
    chi_t, eps = d.noise(chi0, 0.3, seed=4)
    a, s = np.sqrt(d.alpha_sq(0.3)), np.sqrt(d.sigma_sq(0.3))
    np.testing.assert_allclose(chi_t, a * chi0 + s * eps, atol=1e-14)
    # row k of a batch is stream k: first = 2 starts at row 2
    chi_t2, eps2 = d.noise(chi0[2:], 0.3, seed=4, first=2)
    np.testing.assert_array_equal(eps2, eps[2:])
    assert not np.array_equal(d.noise(chi0, 0.3, seed=5)[1], eps)
    b = d.training_batch(512, step=3, seed=1)
    assert b["chi_t"].shape == b["eps"].shape == b["gamma_t"].shape == (512, d.dim)
    assert np.all(np.diff(b["t"]) > 0)  # stratified: one time per stratum, in order
    row = d.to_whitened(d.data[b["index"][0]][None])[0]
    g = b["gamma_t"][0]
    a2, s2 = 1 / (1 + np.exp(g)), 1 / (1 + np.exp(-g))
    np.testing.assert_allclose(b["chi_t"][0], np.sqrt(a2) * row + np.sqrt(s2) * b["eps"][0])
    np.testing.assert_array_equal(d.training_batch(512, step=3, seed=1)["eps"], b["eps"])
    # eps ~ N(0, 1): mean within 4 standard errors
    n = b["eps"].size
    assert abs(b["eps"].mean()) < 4 / np.sqrt(n)


def test_design_from_config_matches_the_binary_sample(tmp_path):
    binary = ROOT / "target" / "debug" / "gud"
    if not binary.exists():
        pytest.skip("the gud binary is not built (cargo build)")
    cfg = tmp_path / "ff.toml"
    cfg.write_text(FREE_FIELD)
    out = tmp_path / "s.npy"
    subprocess.run(
        [str(binary), "sample", "--config", str(cfg), "--score", "gaussian", "--sampler",
         "exp", "--steps", "8", "--samples", "40", "--seed", "3", "--batch", "16",
         "--out", str(out)],
        check=True, capture_output=True,
    )
    want = np.load(out)
    design = gud.Design.from_config(str(cfg))
    # the same config as text
    np.testing.assert_array_equal(gud.Design.from_config(FREE_FIELD).sigma_data, design.sigma_data)
    fields, report = gud.sample(design, gud.Score(design, "gaussian"), 40, seed=3,
                                kind="exp", steps=8)
    assert report["nfe"] == 8 and report["samples"] == 40
    # the binary writes float32 .npy: the same draw, rounded once
    assert want.dtype == np.float32
    np.testing.assert_array_equal(fields.reshape(want.shape).astype(np.float32), want)


# --- scores and samplers ---------------------------------------------------------------


def test_numpy_gaussian_equals_the_builtin(gaussian_design):
    d = gaussian_design
    s = gud.Score(d, "gaussian")
    chi = np.random.default_rng(3).normal(size=(4, d.dim))
    g = d.gamma(0.4)
    np.testing.assert_allclose(s.eps_hat(chi, g), gaussian_eps_numpy(d, chi, g), rtol=1e-12)


@pytest.mark.parametrize("kind", ["exp", "ode", "sde", "ancestral"])
def test_callable_wrapping_the_gaussian_score_is_bit_identical(gaussian_design, kind):
    d = gaussian_design
    s = gud.Score(d, "gaussian")
    calls = []

    def eps_hat(chi, gamma):
        calls.append(chi.shape)
        return s.eps_hat(chi, gamma)

    cb = gud.CallableScore(eps_hat, d)
    a, ra = gud.sample(d, s, 50, seed=7, kind=kind, steps=6, batch=16)
    b, rb = gud.sample(d, cb, 50, seed=7, kind=kind, steps=6, batch=16)
    np.testing.assert_array_equal(a, b)
    assert rb["score"] == "callable" and ra["nfe"] == rb["nfe"]
    assert calls[0] == (16, d.dim)


def test_gaussian_samples_have_the_data_covariance(gaussian_design):
    d = gaussian_design
    fields, _ = gud.sample(d, gud.Score(d, "gaussian"), 4000, seed=1, steps=10)
    chi = d.to_whitened(fields)
    var = chi.var(axis=0)
    # Var of a sample variance of n Gaussians: 2 sigma^4 / (n - 1); 4 sigma per component
    n = chi.shape[0]
    assert np.all(np.abs(var - d.sigma_data) < 4 * d.sigma_data * np.sqrt(2 / (n - 1)) + 1e-3)


def test_float32_callable(gaussian_design):
    d = gaussian_design
    seen = []

    def eps_hat(chi, gamma):
        seen.append(chi.dtype)
        return gaussian_eps_numpy(d, chi.astype(np.float64), gamma.astype(np.float64)).astype(
            np.float32
        )

    f32, _ = gud.sample(d, gud.CallableScore(eps_hat, d, float32=True), 20, steps=6)
    f64, _ = gud.sample(d, gud.Score(d, "gaussian"), 20, steps=6)
    assert seen[0] == np.float32
    np.testing.assert_allclose(f32, f64, atol=1e-4)


def test_data_dependent_scores(gaussian_design):
    d = gaussian_design
    for kind, opts in [("empirical", {}), ("smoothed", {"perturbations": 4}),
                       ("mixture", {"components": 2, "modes": "zero"})]:
        s = gud.Score(d, kind, **opts)
        f, r = gud.sample(d, s, 8, steps=5)
        assert r["score"] == kind and np.all(np.isfinite(f))


# --- likelihoods and exact sampling ----------------------------------------------------


def test_ode_likelihood_of_gaussian_data_is_the_gaussian_density(gaussian_design):
    d = gaussian_design
    test = np.random.default_rng(5).normal(size=(16, 4, 4)) * np.linspace(0.5, 2.0, 16).reshape(4, 4)
    want = -gaussian_log_density(d, test).mean()
    r = gud.nll(d, gud.Score(d, "gaussian"), test, method="ode", tol=1e-7)
    assert abs(r["nats"] - want) < 1e-3 * abs(want)
    # the same through a callable with a vjp (exact divergence by d products)
    cb = gud.CallableScore(
        lambda c, g: gaussian_eps_numpy(d, c, g), d,
        vjp=lambda c, g, u: gaussian_eps_vjp_numpy(d, c, g, u),
    )
    rc = gud.nll(d, cb, test, method="ode", tol=1e-7)
    assert abs(rc["nats"] - r["nats"]) < 1e-6 * abs(want)
    elbo = gud.nll(d, gud.Score(d, "gaussian"), test, method="elbo", steps=50)
    assert elbo["nats"] > r["nats"] - 0.05 * abs(want)  # a bound, up to its noise


def test_exact_proposals_of_gaussian_data(gaussian_design):
    d = gaussian_design
    s = gud.Score(d, "gaussian")
    fields, log_q, report = gud.propose(d, s, 32, seed=2, kind="exp", steps=6)
    plain, _ = gud.sample(d, s, 32, seed=2, kind="exp", steps=6)
    np.testing.assert_allclose(fields, plain, atol=1e-12)  # the ordinary samples
    # the exponential integrator with the exact Gaussian score maps N(0, I) exactly onto the
    # data's Gaussian: log q is its density
    np.testing.assert_allclose(log_q, gaussian_log_density(d, fields), atol=1e-6)
    log_w = gud.log_weights(gaussian_log_density(d, fields), log_q)
    assert gud.ess_fraction(log_w) > 1 - 1e-9
    chain = gud.metropolis(log_w, seed=0)
    assert chain["acceptance"] > 1 - 1e-9 and len(chain["states"]) == 32
    log_z, err = gud.log_mean_weight(log_w)
    assert abs(log_z) < 1e-6
    # a callable with a vjp gives the same log q (Jacobian rows from d products)
    cb = gud.CallableScore(
        lambda c, g: gaussian_eps_numpy(d, c, g), d,
        vjp=lambda c, g, u: gaussian_eps_vjp_numpy(d, c, g, u),
    )
    _, log_q_cb, _ = gud.propose(d, cb, 32, seed=2, kind="exp", steps=6)
    np.testing.assert_allclose(log_q_cb, log_q, atol=1e-8)
    # the continuous ODE
    f2, lq2, r2 = gud.propose(d, s, 8, seed=2, tol=1e-8)
    np.testing.assert_allclose(lq2, gaussian_log_density(d, f2), atol=1e-4)


# --- phi^4 -----------------------------------------------------------------------------


def test_phi4_action_observables_and_hopping():
    configs, summary = gud.phi4.hmc(4, -4.0, 8.0, 512, seed=1, chains=16)
    assert configs.shape == (512, 4, 4) and 0.5 < summary["acceptance"] <= 1.0
    s = gud.phi4.action(configs, -4.0, 8.0)
    phi = configs
    kinetic = sum(((np.roll(phi, -1, axis=a) - phi) ** 2).sum(axis=(1, 2)) for a in (1, 2))
    want = kinetic + (-4.0 * phi**2 + 8.0 * phi**4).sum(axis=(1, 2))
    np.testing.assert_allclose(s, want, rtol=1e-12)
    o = gud.phi4.observables(configs, -4.0, 8.0)
    m = phi.mean(axis=(1, 2))
    assert abs(o["abs_m"]["value"] - np.abs(m).mean()) < 1e-12
    assert abs(o["phi2"]["value"] - (phi**2).mean()) < 1e-12
    assert o["abs_m"]["error"] > 0 and o["tau_int_abs_m"]["tau"] > 0
    # reweighting with equal weights is the plain mean
    ow = gud.phi4.observables(configs, -4.0, 8.0, log_weights=np.zeros(512))
    assert abs(ow["abs_m"]["value"] - o["abs_m"]["value"]) < 1e-12
    kappa, lam = 0.3, 0.02
    m2, l4 = gud.phi4.from_hopping(kappa, lam)
    assert abs(m2 - ((1 - 2 * lam) / kappa - 4)) < 1e-12 and abs(l4 - lam / kappa**2) < 1e-12


def test_phi4_exact_sampling_with_the_gaussian_base():
    configs, _ = gud.phi4.hmc(4, -4.0, 8.0, 1024, seed=2, chains=16)
    d = gud.Design.fit(configs, mean="zero", basis="fourier", prior="free", schedule="rg")
    r = gud.phi4.mcmc(d, gud.Score(d, "gaussian"), -4.0, 8.0, 256, seed=0, kind="exp",
                      steps=8)
    rep = r["report"]
    assert r["proposals"].shape == (256, 4, 4) and len(r["chain"]) > 0
    np.testing.assert_allclose(r["log_p"], -gud.phi4.action(r["proposals"], -4.0, 8.0))
    assert 0 < rep["acceptance"] <= 1 and 0 < rep["ess_fraction"] <= 1
    w = gud.log_weights(r["log_p"], r["log_q"])
    assert abs(gud.ess_fraction(w) - rep["ess_fraction"]) < 1e-12


def test_a_tuned_grid_beats_the_uniform_one_and_samples_on_its_times():
    configs, _ = gud.phi4.hmc(4, -4.0, 8.0, 1024, seed=2, chains=16)
    d = gud.Design.fit(configs, mean="zero", basis="fourier", prior="free", schedule="rg",
                       base={"kind": "mixture", "components": 2, "modes": "all"})
    score = gud.Score(d, "mixture")
    t = gud.tune_grid(d, score, steps=6, pilot=32, reference_steps=60, max_trials=40)
    assert len(t["times"]) == 6 and t["trials"] <= 40
    assert t["rms_error"] < t["uniform_rms_error"]
    fields, rep = gud.sample(d, score, 8, times=t["times"])
    assert rep["grid_points"] == 6 and fields.shape == (8, 1, 4, 4)
    with pytest.raises(ValueError, match="sampler.times"):
        gud.sample(d, score, 8, times=[0.5, 0.1])
    with pytest.raises(ValueError, match="deterministic"):
        gud.tune_grid(d, score, kind="sde")


# --- bad input -------------------------------------------------------------------------


def test_bad_input_raises_clear_exceptions(gaussian_design, tmp_path):
    d = gaussian_design
    with pytest.raises(ValueError, match="unknown variant `nope`"):
        gud.Design.fit(np.zeros((4, 4, 4)), basis="nope")
    with pytest.raises(ValueError, match="shape"):
        gud.Design.fit(np.zeros(5))
    with pytest.raises(ValueError, match="non-finite|NaN|finite"):
        gud.Design.fit(np.full((4, 4, 4), np.nan))
    with pytest.raises(ValueError, match="16 values"):
        d.to_whitened(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="unknown field"):
        gud.sample(d, gud.Score(d), 4, stepz=3)
    with pytest.raises(ValueError, match="batch"):
        gud.sample(d, gud.Score(d), 4, batch=0)
    with pytest.raises(ValueError, match="components"):
        gud.sample(d, gud.CallableScore(lambda c, g: c, 3), 4)
    with pytest.raises(ValueError, match="shape"):
        gud.sample(d, gud.CallableScore(lambda c, g: c[:, :2], d), 4)
    with pytest.raises(ValueError, match="deterministic"):
        gud.propose(d, gud.Score(d), 4, kind="sde")
    with pytest.raises(ValueError, match="m2 and lam|lam"):
        gud.phi4.observables(np.zeros((4, 4, 4)), m2=1.0)
    with pytest.raises(ValueError, match="lam"):
        gud.phi4.hmc(4, -4.0, -1.0, 16)
    with pytest.raises(ValueError, match=r"\(n, L, L\)"):
        gud.phi4.action(np.zeros((4, 4, 3)), 1.0, 1.0)
    with pytest.raises(OSError, match="missing.toml"):
        gud.Design.from_config(str(tmp_path / "missing.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[design]\nbasis = { kind = 'fourier' }\nfoo = 1\n")
    with pytest.raises(ValueError, match="bad.toml"):
        gud.Design.from_config(str(bad))


def test_an_exception_in_the_callable_is_raised_again(gaussian_design):
    d = gaussian_design
    calls = []

    def broken(chi, gamma):
        calls.append(1)
        raise RuntimeError("my network failed")

    with pytest.raises(RuntimeError, match="my network failed"):
        gud.sample(d, gud.CallableScore(broken, d), 100, steps=10, batch=10)
    assert len(calls) == 1  # the sampler stopped at the first failure


def test_keyboard_interrupt_stops_a_long_hmc_run():
    # a run of minutes, interrupted after half a second: HMC checks between rounds
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    start = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        # 2000 configurations 5000 trajectories apart: minutes of work in 16 MB (a short run
        # could end before a starved timer thread sends the signal)
        gud.phi4.hmc(32, -4.0, 8.0, 2000, seed=0, chains=4, sep=5000)
    timer.cancel()
    assert time.monotonic() - start < 30


# --- stubs and examples ----------------------------------------------------------------


def test_the_stubs_name_every_public_item():
    import ast

    import gud._gud as ext

    tree = ast.parse((ROOT / "python" / "gud" / "_gud.pyi").read_text())
    stubbed = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    stubbed |= {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign)}
    public = {k for k in dir(ext) if not k.startswith("_")} | {"__version__"}
    assert stubbed - {"ArrayLike", "Array", "Table"} == public
    for cls in ("Design", "Score"):
        node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
        methods = {f.name for f in node.body if isinstance(f, ast.FunctionDef)} - {"__init__"}
        runtime = {k for k in dir(getattr(ext, cls)) if not k.startswith("_")}
        assert methods == runtime, cls


@pytest.mark.parametrize(
    "script,args",
    [("hmc_observables.py", ["--size", "4", "--samples", "256"]),
     ("own_network.py", ["--size", "4", "--samples", "256", "--steps", "6"])],
)
def test_examples_run(script, args):
    r = subprocess.run(
        [sys.executable,
         str(ROOT / "python" / "examples" / script), *args],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "binder" in r.stdout


def test_the_package_docstring_example_runs():
    import doctest

    failures, tried = doctest.testmod(gud, verbose=False)
    assert tried >= 4 and failures == 0


# --- exact sampling at scale: the local coupling flow (issue 32) ---------------------------


def test_issue32_a_flow_trains_proposes_exactly_and_round_trips(tmp_path):
    train, _ = gud.phi4.hmc(4, -1.0, 1.0, 256, seed=3)
    design = gud.Design.fit(train, mean="zero", basis="fourier", prior="free", schedule="rg")
    flow = gud.phi4.Flow.train(design, -1.0, 1.0, steps=40, batch=16, stages=2, layers=1, hidden=4)
    assert flow.provenance["l"] == 4 and flow.provenance["training"]["steps"] == 40
    fields, log_q = flow.propose(design, 64, seed=2)
    assert fields.shape == (64, 4, 4) and np.isfinite(log_q).all()
    # proposal k is a function of (seed, k) alone
    again, log_q2 = flow.propose(design, 4, seed=2, first=10)
    np.testing.assert_array_equal(again, fields[10:14])
    np.testing.assert_array_equal(log_q2, log_q[10:14])
    # the file round-trips bit for bit, and the binary's mcmc path takes it
    path = tmp_path / "f.safetensors"
    flow.save(str(path))
    loaded = gud.phi4.Flow.load(str(path))
    np.testing.assert_array_equal(loaded.propose(design, 8, seed=2)[1], log_q[:8])
    run = gud.phi4.mcmc(design, loaded, -1.0, 1.0, 256, seed=1)
    r = run["report"]
    assert r["sampling"]["sampler"] == "flow" and 0 < r["ess_fraction"] <= 1
    assert r["non_injective"] == 0 and r["log_q_cost_ratio"] > 0
    with pytest.raises(ValueError, match="tol"):
        gud.phi4.mcmc(design, flow, -1.0, 1.0, 16, tol=1e-3)
    with pytest.raises(TypeError, match="score"):
        gud.phi4.mcmc(design, "flow", -1.0, 1.0, 16)
    with pytest.raises(OSError, match="missing.safetensors"):
        gud.phi4.Flow.load(str(tmp_path / "missing.safetensors"))
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_bytes(b"not a flow")
    with pytest.raises(ValueError, match="not a gud flow"):
        gud.phi4.Flow.load(str(bogus))


def test_issue33_a_shard_of_the_binary_is_numpys_npz_and_matches_the_flows_proposals(tmp_path):
    binary = ROOT / "target" / "debug" / "gud"
    if not binary.exists():
        pytest.skip("the gud binary is not built (cargo build)")
    cfg = tmp_path / "ff.toml"
    cfg.write_text(FREE_FIELD)
    design = gud.Design.from_config(str(cfg))
    flow = gud.phi4.Flow.train(design, -1.0, 1.0, steps=10, batch=8, stages=2, layers=1, hidden=4)
    flow.save(str(tmp_path / "f.safetensors"))
    shard = tmp_path / "s.npz"
    subprocess.run(
        [str(binary), "phi4", "propose", "--config", str(cfg), "--flow",
         str(tmp_path / "f.safetensors"), "--m2", "-1", "--lam", "1", "--seed", "4",
         "--first", "6", "--count", "5", "--out", str(shard)],
        check=True, capture_output=True,
    )
    f = np.load(shard)
    prov = json.loads(bytes(f["provenance"]).decode())
    assert (prov["first"], prov["count"], prov["seed"]) == (6, 5, 4)
    fields, log_q = flow.propose(design, 5, seed=4, first=6)
    np.testing.assert_array_equal(f["fields"], fields)
    np.testing.assert_array_equal(f["log_q"], log_q)
    np.testing.assert_allclose(f["log_p"], -gud.phi4.action(fields, -1.0, 1.0), rtol=1e-12)


def test_issue33_a_callable_target_gives_the_built_in_phi4_chain_bit_for_bit():
    train, _ = gud.phi4.hmc(4, -1.0, 1.0, 256, seed=3)
    design = gud.Design.fit(train, mean="zero", basis="fourier", prior="free", schedule="rg")
    score = gud.Score(design, "base")
    built_in = gud.phi4.mcmc(design, score, -1.0, 1.0, 300, seed=4, steps=5)

    def log_p(fields):  # the same action, through gud's own function
        return -gud.phi4.action(fields[:, 0], -1.0, 1.0)

    run = gud.mcmc(design, score, log_p, 300, seed=4, steps=5, chunk=64)
    np.testing.assert_array_equal(run["chain"], built_in["chain"])
    assert run["log_p"].tobytes() == built_in["log_p"].tobytes()
    for key in ("acceptance", "ess_fraction", "log_z", "log_z_error", "non_finite"):
        assert run["report"][key] == built_in["report"][key], key

    def numpy_action(fields):  # written out in numpy: equal to rounding
        phi = fields[:, 0]
        kin = sum(((np.roll(phi, 1, axis=a) - phi) ** 2).sum(axis=(1, 2)) for a in (1, 2))
        return -(kin + (-1.0 * phi**2 + phi**4).sum(axis=(1, 2)))

    run2 = gud.mcmc(design, score, numpy_action, 300, seed=4, steps=5)
    np.testing.assert_allclose(run2["log_p"], built_in["log_p"], rtol=1e-12, atol=1e-12)
    assert abs(run2["report"]["ess_fraction"] - built_in["report"]["ess_fraction"]) < 1e-9

    # NaN is a counted rejection; a wrong shape and an exception are errors
    def some_nan(fields):
        out = log_p(fields)
        out[::10] = np.nan
        return out

    r = gud.mcmc(design, score, some_nan, 300, seed=4, steps=5)
    assert r["report"]["non_finite"] == 30
    assert not np.isin(np.arange(0, 300, 10), r["chain"][1:]).any()
    with pytest.raises(ValueError, match="log_p"):
        gud.mcmc(design, score, lambda f: np.zeros((len(f), 2)), 20, steps=5)
    with pytest.raises(RuntimeError, match="boom"):
        gud.mcmc(design, score, lambda f: (_ for _ in ()).throw(RuntimeError("boom")), 20, steps=5)
    with pytest.raises(TypeError, match="log_p"):
        gud.mcmc(design, score, 3, 20)


def test_issue33_a_callable_target_measures_its_own_observables():
    train, _ = gud.phi4.hmc(4, -1.0, 1.0, 256, seed=3)
    design = gud.Design.fit(train, mean="zero", basis="fourier", prior="free", schedule="rg")
    score = gud.Score(design, "base")
    built_in = gud.phi4.mcmc(design, score, -1.0, 1.0, 300, seed=4, steps=5)

    def log_p(fields):
        return -gud.phi4.action(fields[:, 0], -1.0, 1.0)

    def observables(fields):
        m = fields.mean(axis=(1, 2, 3))
        return {"abs_m": np.abs(m), "phi2": (fields**2).mean(axis=(1, 2, 3))}

    run = gud.mcmc(design, score, log_p, 300, seed=4, steps=5, observables=observables, chunk=64)
    obs = run["report"]["observables"]
    assert list(obs) == ["abs_m", "phi2"]
    fields = run["proposals"][:, 0]
    abs_m = np.abs(fields.mean(axis=(1, 2)))
    log_w = run["log_p"] - run["log_q"]
    w = np.exp(log_w - log_w.max())
    # proposals (bins of one) and the self-normalised reweighting: closed forms
    assert obs["abs_m"]["raw"]["value"] == pytest.approx(abs_m.mean(), rel=1e-12)
    assert obs["abs_m"]["raw"]["error"] == pytest.approx(abs_m.std(ddof=1) / np.sqrt(300), rel=1e-9)
    assert obs["abs_m"]["reweighted"]["value"] == pytest.approx((w * abs_m).sum() / w.sum(), rel=1e-12)
    # the same estimates as the built-in target's, within their errors (bins may differ)
    for key, name in (("abs_m", "abs_m"), ("phi2", "phi2")):
        for kind in ("chain", "reweighted"):
            ours, theirs = obs[key][kind], built_in["report"][kind][name]
            assert abs(ours["value"] - theirs["value"]) < 1e-9 + 0.5 * theirs["error"], (key, kind)
    # the chain's tau of the first observable sets the cost per effective sample
    r = run["report"]
    assert r["s_per_effective_sample"] == pytest.approx(
        r["s_per_proposal"] * 2 * max(obs["abs_m"]["tau_int"]["tau"], 0.5), rel=1e-12)
    # without observables: the cost per proposal over ESS/N
    plain = gud.mcmc(design, score, log_p, 300, seed=4, steps=5)["report"]
    assert plain["observables"] == {}
    assert plain["s_per_effective_sample"] == pytest.approx(
        plain["s_per_proposal"] / plain["ess_fraction"], rel=1e-12)
    with pytest.raises(TypeError, match="observables"):
        gud.mcmc(design, score, log_p, 20, steps=5, observables=lambda f: np.zeros(len(f)))
    with pytest.raises(ValueError, match="observables"):
        gud.mcmc(design, score, log_p, 20, steps=5, observables=lambda f: {"a": np.zeros(3)})
    with pytest.raises(ValueError, match="observables"):
        gud.mcmc(design, score, log_p, 20, steps=5, observables=lambda f: {"a": np.full(len(f), np.nan)})


def test_issue35_nll_of_the_configs_test_images_equals_the_binarys(tmp_path):
    # data="test": the config's held-out images, dequantised, bits/dim with the 8-bit offset,
    # the number `gud nll` prints for the same config and score
    import pathlib
    import subprocess

    root = pathlib.Path(__file__).resolve().parents[2]
    fixture = root / "tests" / "fixtures" / "fashion-mnist"
    cfg = tmp_path / "fm.toml"
    cfg.write_text(
        "[data]\nkind = 'images'\n"
        f"train = '{fixture / 't10k-64-images-idx3-ubyte.gz'}'\n"
        f"test = '{fixture / 't10k-64-images-idx3-ubyte.gz'}'\nresize = [8, 8]\n"
        "[design]\nbasis = { kind = 'pixel' }\nprior = { kind = 'white' }\nschedule = { kind = 'cosine' }\n"
        "[score]\nkind = 'gaussian'\n")
    design = gud.Design.from_config(str(cfg))
    ours = gud.nll(design, gud.Score(design, "gaussian"), "test", steps=20, samples=32)
    assert ours["dequantized"] and ours["samples"] == 32
    binary = root / "target" / "debug" / "gud"
    if not binary.exists():
        pytest.skip("the gud binary is not built (cargo build)")
    r = subprocess.run([str(binary), "nll", "--config", str(cfg), "--score", "gaussian",
                        "--steps", "20", "--samples", "32", "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    theirs = json.loads(r.stdout)
    assert ours["bits_per_dim"] == pytest.approx(theirs["bits_per_dim"], rel=1e-12)
    # an array-fitted design has no held-out part; another string is an error
    plain = gud.Design.fit(np.random.default_rng(0).standard_normal((16, 4, 4)))
    with pytest.raises(ValueError, match="Design.from_config"):
        gud.nll(plain, gud.Score(plain, "gaussian"), "test")
    with pytest.raises(ValueError, match="test"):
        gud.nll(design, gud.Score(design, "gaussian"), "train")


def test_issue32_the_flows_switches_train_and_are_recorded(tmp_path):
    # the path gradient with the tails term, clipped, on sublattice levels; a dilated flow
    train, _ = gud.phi4.hmc(4, -1.0, 1.0, 256, seed=3)
    design = gud.Design.fit(train, mean="zero", basis="fourier", prior="free", schedule="rg")
    flow = gud.phi4.Flow.train(design, -1.0, 1.0, steps=20, batch=8, stages=2, layers=2, hidden=4,
                               path_gradient=True, tails=True, clip=1.0, levels=[0, 1])
    t = flow.provenance["training"]
    assert t["path_gradient"] is True and t["clip"] == 1.0
    fields, log_q = flow.propose(design, 32, seed=2)
    assert np.isfinite(log_q).all()
    path = tmp_path / "f.safetensors"
    flow.save(str(path))
    np.testing.assert_array_equal(gud.phi4.Flow.load(str(path)).propose(design, 32, seed=2)[1], log_q)
    dilated = gud.phi4.Flow.train(design, -1.0, 1.0, steps=5, batch=8, stages=1, layers=2,
                                  hidden=4, dilations=[2, 1])
    assert np.isfinite(dilated.propose(design, 8, seed=1)[1]).all()
    with pytest.raises(ValueError, match="levels"):
        gud.phi4.Flow.train(design, -1.0, 1.0, steps=5, levels=[4])
