"""Your JAX function as a gud score: ``gud.jax.score(fn, design)``.

``fn(chi_t, gamma_t) -> eps_hat`` maps (n, d) arrays to (n, d) arrays in whitened component
space (the layout of :meth:`gud.Design.training_batch`, on which you train it); bind your
parameters first (``functools.partial(apply, params)``). The score evaluates ``jax.jit(fn)``
for the samplers and gives gud the vector-Jacobian products of ``jax.vjp`` for the exact
densities (:func:`gud.propose`, ``gud.nll(method="ode")``), jitted too. A jitted function
compiles once per batch shape (gud's batches have one size but the last).

On the CPU the arrays cross without a copy (numpy reads a JAX array's memory through
``__array__``); on an accelerator each call copies its inputs to the device and the result back.

Only this module imports jax; ``import gud`` does not.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import gud


def score(fn, design, *, dtype=jnp.float32, vjp=True, jit=True, allow_nonfinite=False):
    """A :class:`gud.CallableScore` of ``fn(chi_t, gamma_t)``.

    ``dtype``: jnp.float32 (gud passes float32 arrays) or jnp.float64 (needs
    ``jax.config.update("jax_enable_x64", True)``). ``vjp``: give gud jax.vjp's products (True)
    or let it take central differences (False).
    """
    dtype = jnp.dtype(dtype)
    if dtype not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        raise TypeError(f"dtype: expected jnp.float32 or jnp.float64, got {dtype}")
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError('dtype: float64 needs jax.config.update("jax_enable_x64", True) first')
    f = jax.jit(fn) if jit else fn

    def pullback(x, g, u):
        _, back = jax.vjp(lambda y: fn(y, g), x)
        return back(u)[0]

    pb = jax.jit(pullback) if jit else pullback

    def eps_hat(chi_t, gamma_t):
        return np.asarray(f(jnp.asarray(chi_t, dtype), jnp.asarray(gamma_t, dtype)))

    def eps_vjp(chi_t, gamma_t, u):
        return np.asarray(pb(jnp.asarray(chi_t, dtype), jnp.asarray(gamma_t, dtype),
                             jnp.asarray(u, dtype)))

    return gud.CallableScore(eps_hat, design, vjp=eps_vjp if vjp else None,
                             float32=dtype == jnp.float32, allow_nonfinite=allow_nonfinite)
