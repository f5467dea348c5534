"""Every public function of the Python package under bad input (issue 34): wrong dtypes (int,
complex, object, bool), shapes (1-D, 4-D, transposed, empty), NaN / inf, huge sizes and bad
keyword values. Each must raise ValueError or TypeError naming the argument: never crash the
interpreter, hang, or return a silent result.

Each case runs in this process; a crash would take the whole pytest run with it, and a hang is
caught by the per-case time limit.
"""

import time

import numpy as np
import pytest

import gud

BAD = (ValueError, TypeError)
HUGE = 10**12


@pytest.fixture(scope="module")
def design():
    rng = np.random.default_rng(0)
    return gud.Design.fit(rng.normal(size=(64, 4, 4)), basis="fourier", prior="matched")


@pytest.fixture(scope="module")
def score(design):
    return gud.Score(design, "gaussian")


@pytest.fixture(scope="module")
def lattice():
    # a 4 x 4 lattice design for phi^4 exact sampling
    train, _ = gud.phi4.hmc(4, -1.0, 1.0, 64, seed=1)
    d = gud.Design.fit(train, mean="zero", basis="fourier", prior="free")
    return d, gud.Score(d, "gaussian")


def named(exc, *names):
    """The exception's text (with pyo3's notes naming the argument) names one of `names`."""
    text = str(exc) + " " + " ".join(getattr(exc, "__notes__", []))
    assert any(n in text for n in names), f"{text!r} names none of {names}"


def refused(f, *names, limit_s=30.0):
    start = time.monotonic()
    with pytest.raises(BAD) as info:
        f()
    took = time.monotonic() - start
    assert took < limit_s, f"took {took:.1f} s to refuse"
    named(info.value, *names)
    return info.value


def ints(shape=(8, 4, 4)):
    return np.arange(np.prod(shape)).reshape(shape)


def bad_arrays(shape):
    """(label, array) pairs that no function taking float fields of `shape` may accept."""
    good = np.random.default_rng(1).normal(size=shape)
    nan = good.copy()
    nan.flat[3] = np.nan
    inf = good.copy()
    inf.flat[0] = np.inf
    return [
        ("int", ints(shape)),
        ("complex", good + 1j),
        ("object", np.array([None] * good.size, dtype=object).reshape(shape)),
        ("bool", good > 0),
        ("strings", np.full(shape, "x")),
        ("nan", nan),
        ("inf", inf),
        ("empty", np.zeros((0,) + shape[1:])),
        ("1-d wrong size", np.zeros(7)),
        ("4-d wrong", np.zeros((2, 3, 5, 5))),
    ]


# --- arrays into designs -----------------------------------------------------------------


@pytest.mark.parametrize("label,x", bad_arrays((8, 4, 4)))
def test_issue34_design_fit_refuses_bad_data(label, x):
    refused(lambda: gud.Design.fit(x), "data")


def test_issue34_design_fit_refuses_complex_without_dropping_the_imaginary_part():
    x = np.random.default_rng(0).normal(size=(16, 4, 4)) * (1 + 1j)
    e = refused(lambda: gud.Design.fit(x), "data")
    assert "complex" in str(e)


def test_issue34_a_design_name_where_the_table_goes_names_the_argument():
    x = np.random.default_rng(0).normal(size=(16, 4, 4))
    e = refused(lambda: gud.Design.fit(x, "matched"), "design")
    assert "prior" in str(e) and "key with no value" not in str(e)
    refused(lambda: gud.Design.fit(x, prior="nope"), "design.prior")
    refused(lambda: gud.Design.fit(x, basis={"kind": "haar", "levels": -1}), "basis", "levels")
    refused(lambda: gud.Design.fit(x, schedule=3.5), "schedule")


@pytest.mark.parametrize(
    "method", ["to_components", "from_components", "whiten", "unwhiten", "to_whitened", "to_fields"]
)
def test_issue34_design_transforms_refuse_bad_rows(design, method):
    f = getattr(design, method)
    for label, x in bad_arrays((8, 4, 4)):
        if label in ("nan", "inf", "empty"):
            continue  # transforms of non-finite or empty rows are well defined
        refused(lambda: f(x), "phi", "comp", "chi")
    # a transposed batch, (d, n) instead of (n, d), has rows of the wrong size
    refused(lambda: f(np.zeros((16, 5))), "phi", "comp", "chi")


@pytest.mark.parametrize("method", ["gamma", "dgamma_dt", "alpha_sq", "sigma_sq", "snr"])
def test_issue34_schedule_accessors_refuse_bad_times(design, method):
    f = getattr(design, method)
    for t in [np.nan, np.inf, np.array([0.5, np.nan]), np.array([1 + 1j]), "0.5", None]:
        refused(lambda: f(t), "t")


def test_issue34_noise_and_training_batch_refuse_bad_arguments(design):
    chi = np.zeros((4, design.dim))
    refused(lambda: design.noise(chi, np.nan), "t")
    refused(lambda: design.noise(chi, [0.5, 0.5]), "t")
    refused(lambda: design.noise(ints((4, design.dim)), 0.5), "chi0")
    refused(lambda: design.noise(chi, 0.5, seed=-1), "seed", "integer")
    refused(lambda: design.noise(chi, 0.5, first=2**64 - 2), "first")
    refused(lambda: design.training_batch(0, 0), "batch")
    refused(lambda: design.training_batch(HUGE, 0), "memory", "batch")
    refused(lambda: design.training_batch(-1, 0), "batch", "integer")


# --- scores --------------------------------------------------------------------------------


def test_issue34_scores_refuse_bad_kinds_options_and_data(design):
    refused(lambda: gud.Score(design, "nope"), "score")
    refused(lambda: gud.Score(design, "empirical", data=np.zeros((8, 3, 3))), "data")
    refused(lambda: gud.Score(design, "empirical", data=ints()), "data")
    refused(lambda: gud.Score(design, "els", patch=0), "score", "patch")
    refused(lambda: gud.Score.from_callable(lambda c, g: c, 0), "dim")
    refused(lambda: gud.Score.from_callable("not callable", 4), "eps_hat")
    refused(lambda: gud.CallableScore(lambda c, g: c, 2.5), "design")
    refused(lambda: gud.CallableScore(lambda c, g: c, design, vjp=3), "vjp")


def test_issue34_eps_hat_refuses_bad_rows_and_gammas(design, score):
    d = design.dim
    for label, x in bad_arrays((4, d)):
        if label in ("nan", "inf", "empty"):
            continue
        refused(lambda: score.eps_hat(x, np.zeros(d)), "chi_t")
    refused(lambda: score.eps_hat(np.zeros((4, d)), np.zeros(d + 1)), "gamma_t")
    refused(lambda: score.eps_hat(np.zeros((4, d)), np.zeros(d) + 1j), "gamma_t")


def test_issue34_a_transposed_callable_output_is_an_error_not_scrambled_samples(design):
    s = gud.CallableScore(lambda chi, g: np.ascontiguousarray((0.1 * chi).T), design)
    e = refused(lambda: gud.sample(design, s, 4, steps=3), "eps_hat")
    assert "shape" in str(e) and f"(4, {design.dim})" in str(e)


def test_issue34_a_nan_from_the_callable_is_an_error_by_default_and_counted_when_allowed(design):
    def eps(chi, g):
        out = 0.1 * chi
        out[0, 0] = np.nan
        return out

    e = refused(lambda: gud.sample(design, gud.CallableScore(eps, design), 4, steps=3), "eps_hat")
    assert "nan" in str(e).lower() and "allow_nonfinite" in str(e)
    allowed = gud.CallableScore(eps, design, allow_nonfinite=True)
    fields, report = gud.sample(design, allowed, 4, steps=3)
    # every call held a NaN: 3 grid points, one batch
    assert report["callable_nonfinite_calls"] == 3
    assert np.isnan(fields).any()
    ok = gud.CallableScore(lambda chi, g: 0.1 * chi, design)
    _, report = gud.sample(design, ok, 4, steps=3)
    assert report["callable_nonfinite_calls"] == 0


def test_issue34_a_callable_that_raises_or_returns_ints_is_named(design):
    def boom(chi, g):
        raise RuntimeError("my network failed")

    with pytest.raises(RuntimeError, match="my network failed"):
        gud.sample(design, gud.CallableScore(boom, design), 4, steps=3)
    ints_out = gud.CallableScore(lambda chi, g: np.zeros(chi.shape, dtype=np.int64), design)
    refused(lambda: gud.sample(design, ints_out, 4, steps=3), "eps_hat")


# --- samplers, likelihoods, exact sampling --------------------------------------------------


def test_issue34_sample_refuses_bad_counts_and_sampler_values(design, score):
    refused(lambda: gud.sample(design, score, HUGE, steps=3), "memory")
    refused(lambda: gud.sample(design, score, -1), "n", "integer")
    refused(lambda: gud.sample(design, score, 2**70), "n", "integer")
    refused(lambda: gud.sample(design, score, 4, seed=-3), "seed", "integer")
    refused(lambda: gud.sample(design, score, 4, first=2**64 - 2), "first")
    e = refused(lambda: gud.sample(design, score, 4, sampler="nope"), "sampler")
    assert "exp" in str(e) and "expected `=`" not in str(e)
    refused(lambda: gud.sample(design, score, 4, steps=0), "steps")
    refused(lambda: gud.sample(design, score, 4, order=0), "order")
    refused(lambda: gud.sample(design, score, 4, batch=0), "batch")
    refused(lambda: gud.sample(design, score, 4, times=[0.1, 0.5]), "times")
    refused(lambda: gud.sample(design, score, 4, grid="nope"), "grid")
    refused(lambda: gud.sample(design, score, 4, nonsense=1), "nonsense")
    refused(lambda: gud.sample(design, score, 4.5), "n", "integer")


def test_issue34_propose_checks_its_memory_instead_of_aborting(design, score):
    e = refused(lambda: gud.propose(design, score, HUGE, steps=4), "proposals", "memory")
    assert "memory" in str(e)
    refused(lambda: gud.propose(design, score, HUGE, tol=1e-4), "memory")
    refused(lambda: gud.propose(design, score, 4, sampler="sde"), "sampler")
    refused(lambda: gud.propose(design, score, 4, tol=np.nan), "tol")
    refused(lambda: gud.propose(design, score, 4, batch=0), "batch")
    refused(lambda: gud.propose(design, score, 0), "proposals")


def test_issue34_tune_grid_refuses_an_order_exp_lacks_and_zero_trials(design, score):
    for order in (0, 9):
        refused(lambda: gud.tune_grid(design, score, steps=3, pilot=8, order=order), "order")
    refused(lambda: gud.tune_grid(design, score, steps=3, pilot=8, max_trials=0), "max_trials")
    refused(lambda: gud.tune_grid(design, score, steps=1, pilot=8), "steps")
    refused(lambda: gud.tune_grid(design, score, steps=3, pilot=HUGE), "memory")
    refused(lambda: gud.tune_grid(design, score, steps=3, pilot=-1), "pilot", "integer")


def test_issue34_nll_refuses_bad_data_and_values(design, score):
    for label, x in bad_arrays((8, 4, 4)):
        refused(lambda: gud.nll(design, score, x), "data")
    refused(lambda: gud.nll(design, score, np.zeros((4, 4, 4)), method="nope"), "method")
    refused(lambda: gud.nll(design, score, np.zeros((4, 4, 4)), tol=2.0), "tol")
    refused(lambda: gud.nll(design, score, np.zeros((4, 4, 4)), steps=0), "steps")
    refused(lambda: gud.nll(design, score, np.zeros((4, 4, 4)), divergence="x"), "divergence")
    refused(lambda: gud.nll(design, score, np.zeros((4, 5, 5))), "data", "shape")


def test_issue34_weights_refuse_nan_wrong_shapes_and_dtypes():
    e = refused(lambda: gud.ess_fraction([0.0, np.nan, 1.0]), "log_w")
    assert "log_w[1]" in str(e)
    refused(lambda: gud.ess_fraction([0.0, np.inf]), "log_w")
    refused(lambda: gud.ess_fraction([]), "log_w")
    refused(lambda: gud.ess_fraction(np.zeros((3, 3))), "log_w")
    refused(lambda: gud.ess_fraction(np.zeros(3) + 0j), "log_w")
    refused(lambda: gud.ess_fraction(np.zeros(3, dtype=object)), "log_w")
    refused(lambda: gud.metropolis(np.zeros((3, 3))), "log_w")
    refused(lambda: gud.metropolis([0.0, np.nan]), "log_w")
    refused(lambda: gud.metropolis([0.0, 1.0], seed=-1), "seed", "integer")
    refused(lambda: gud.log_mean_weight([0.0]), "log_w")
    refused(lambda: gud.log_mean_weight(np.zeros((2, 2))), "log_w")
    refused(lambda: gud.log_weights(np.zeros(3), np.zeros(4)), "log_p")
    refused(lambda: gud.log_weights(np.zeros((3, 1)), np.zeros(3)), "log_p")
    # -inf is a weight of zero, as a rejected proposal's
    assert gud.ess_fraction([0.0, -np.inf]) == pytest.approx(0.5)
    # a non-finite log p is a rejection: log w = -inf
    np.testing.assert_array_equal(gud.log_weights([np.nan, 1.0], [0.0, 0.0]), [-np.inf, 1.0])


# --- phi^4 ------------------------------------------------------------------------------------


def test_issue34_phi4_functions_refuse_bad_configurations_and_couplings():
    for label, x in bad_arrays((8, 4, 4)):
        if label == "empty":
            continue
        refused(lambda: gud.phi4.action(x, -1.0, 1.0), "configs")
        refused(lambda: gud.phi4.observables(x), "configs")
    refused(lambda: gud.phi4.action(np.zeros((2, 4, 5)), -1.0, 1.0), "configs")
    refused(lambda: gud.phi4.action(np.zeros((2, 4, 4)), np.nan, 1.0), "m2")
    refused(lambda: gud.phi4.hmc(4, -1.0, 1.0, HUGE), "memory")
    refused(lambda: gud.phi4.hmc(4, -1.0, 1.0, -5), "n", "integer")
    refused(lambda: gud.phi4.hmc(-4, -1.0, 1.0, 8), "l", "integer")
    refused(lambda: gud.phi4.hmc(4, -1.0, -1.0, 8), "lam")
    refused(lambda: gud.phi4.from_hopping(np.nan, 0.1), "kappa")


def test_issue34_phi4_mcmc_refuses_huge_counts_at_once_and_names_values(lattice):
    d, s = lattice
    e = refused(lambda: gud.phi4.mcmc(d, s, -1.0, 1.0, HUGE), "proposals", limit_s=10.0)
    assert "memory" in str(e)
    e = refused(lambda: gud.phi4.mcmc(d, s, -1.0, 1.0, 1), "proposals")
    assert "--proposals" not in str(e)
    e = refused(lambda: gud.phi4.mcmc(d, s, -1.0, 1.0, 16, sampler="sde"), "sampler")
    assert "expected `=`" not in str(e)
    refused(lambda: gud.phi4.mcmc(d, s, -1.0, 1.0, 16, batch=0), "batch")
    refused(lambda: gud.phi4.mcmc(d, s, -1.0, 1.0, 16, hmc_reference=HUGE), "memory")
