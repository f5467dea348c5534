"""Your network in JAX, end to end (issue 35): trained from Python on Design.training_batch,
then sampled, its likelihood and its exact densities through gud, with jax.vjp for the
Jacobians. `make python` installs JAX (pinned) into .venv; without it these tests are skipped.
"""

import numpy as np
import pytest
from framework_checks import check_bad_callables, check_exact_densities, free_field_design

import gud

jax = pytest.importorskip("jax", reason="jax is not installed (make python installs it)")
jnp = pytest.importorskip("jax.numpy")


@pytest.fixture(scope="module")
def design():
    return free_field_design()


def jax_apply(params, chi, gamma, xp):
    """A two-layer perceptron correction to the Gaussian denoiser, in numpy or jax.numpy."""
    h = xp.tanh(xp.concatenate([chi, gamma / 10], axis=1) @ params["w1"] + params["b1"])
    return xp.sqrt(1 / (1 + xp.exp(-gamma))) * chi + h @ params["w2"]


@pytest.fixture(scope="module")
def jax_params(design):
    d = design.dim
    key = jax.random.PRNGKey(0)
    k1, k2 = jax.random.split(key)
    params = {"w1": 0.3 * jax.random.normal(k1, (2 * d, 32)), "b1": jnp.zeros(32),
              "w2": 0.1 * jax.random.normal(k2, (32, d))}

    def loss(p, chi, gamma, eps):
        return jnp.mean((jax_apply(p, chi, gamma, jnp) - eps) ** 2)

    grad = jax.jit(jax.value_and_grad(loss))
    held = design.training_batch(512, step=10**6, seed=9)
    before = float(loss(params, held["chi_t"], held["gamma_t"], held["eps"]))
    for step in range(100):
        b = design.training_batch(128, step=step, seed=1)
        _, g = grad(params, b["chi_t"], b["gamma_t"], b["eps"])
        params = jax.tree_util.tree_map(lambda p, gp: p - 0.05 * gp, params, g)
    after = float(loss(params, held["chi_t"], held["gamma_t"], held["eps"]))
    assert after < 0.97 * before, (before, after)
    return params


def test_jax_function_samples_like_the_same_weights_in_numpy(design, jax_params):
    import functools

    import gud.jax

    score = gud.jax.score(functools.partial(jax_apply, jax_params, xp=jnp), design)
    a, _ = gud.sample(design, score, 64, seed=4, kind="exp", steps=8)
    p64 = {k: np.asarray(v, dtype=np.float64) for k, v in jax_params.items()}
    ref = gud.CallableScore(lambda chi, gamma: jax_apply(p64, chi, gamma, np), design)
    b, _ = gud.sample(design, ref, 64, seed=4, kind="exp", steps=8)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.abs(b).max())


def test_jax_vjp_gives_the_exact_densities_of_central_differences(design, jax_params):
    import functools

    import gud.jax

    fn = functools.partial(jax_apply, jax_params, xp=jnp)
    p64 = {k: np.asarray(v, dtype=np.float64) for k, v in jax_params.items()}
    # the same weights in float64 numpy, central differences: float32's 6e-8 relative error of
    # every Jacobian entry of jax.vjp, summed into log det over 16 components and 6 steps
    reference = gud.CallableScore(lambda chi, gamma: jax_apply(p64, chi, gamma, np), design)
    check_exact_densities(design, gud.jax.score(fn, design), reference, 2e-5)


def test_jax_bad_functions_are_clear_errors(design):
    import gud.jax

    check_bad_callables(design, lambda fn: gud.jax.score(fn, design, jit=False))
    with pytest.raises(ValueError, match="jax_enable_x64"):
        gud.jax.score(lambda c, g: c, design, dtype=jnp.float64)


def test_the_jax_example_runs_end_to_end(tmp_path):
    from framework_checks import run_example

    s = run_example("jax_network.py", tmp_path)
    assert s["nfe"] == 4 and np.isfinite(s["nll_bits_per_dim"]) and s["s_per_proposal"] > 0
