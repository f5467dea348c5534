"""Your JAX network with gud, end to end: train, sample, likelihood, exact densities.

The JAX version of python/examples/torch_network.py: a small convolutional eps_hat written
with jax.lax (no framework beyond jax), trained with Adam from Python on gud's training
batches of Fashion-MNIST 16 x 16 (``make data``), sampled with the config's sampler, its NLL
on the held-out images, and proposals with their exact log q from ``jax.vjp``.

    make data
    .venv/bin/python python/examples/jax_network.py [--steps 1500]
"""

import functools
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import gud
import gud.jax

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from evaluate_score import arguments, design_maps, evaluate  # noqa: E402

a = arguments(__doc__, "out/jax_network").parse_args()
out = pathlib.Path(a.out)
out.mkdir(parents=True, exist_ok=True)

design = gud.Design.from_config(a.config)
c, h, w = design.shape
d = design.dim
maps = {k: jnp.asarray(m, jnp.float32) for k, m in design_maps(design).items()}
to_image, gamma_image, to_components = maps["to_image"], maps["gamma_image"], maps["to_components"]


def conv(p, x):
    y = jax.lax.conv_general_dilated(x, p["w"], (1, 1), "SAME",
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return y + p["b"][None, :, None, None]


def init_conv(key, c_in, c_out, scale=1.0):
    std = scale * np.sqrt(2.0 / (9 * c_in))
    return {"w": std * jax.random.normal(key, (c_out, c_in, 3, 3)), "b": jnp.zeros(c_out)}


def init(key, width):
    k = jax.random.split(key, 7)
    return {"inp": init_conv(k[0], 2 * c, width), "a1": init_conv(k[1], width, width),
            "a2": init_conv(k[2], width, 2 * width), "mid": init_conv(k[3], 2 * width, 2 * width),
            "b2": init_conv(k[4], 4 * width, width), "b1": init_conv(k[5], 2 * width, width),
            "out": init_conv(k[6], width, c, scale=0.0)}


def apply(params, chi, gamma):
    """eps_hat: the Gaussian denoiser sqrt(sigmoid(gamma)) chi plus a two-level convolutional
    correction of the image and the gamma image."""
    n = chi.shape[0]
    x = jnp.concatenate([(chi @ to_image).reshape(n, c, h, w),
                         (gamma @ gamma_image / 10).reshape(n, c, h, w)], 1)
    act = jax.nn.silu
    s1 = act(conv(params["a1"], act(conv(params["inp"], x))))
    pooled = s1.reshape(n, -1, h // 2, 2, w // 2, 2).mean(axis=(3, 5))
    s2 = act(conv(params["a2"], pooled))
    y = act(conv(params["mid"], s2))
    y = act(conv(params["b2"], jnp.concatenate([y, s2], 1)))
    y = jnp.repeat(jnp.repeat(y, 2, axis=2), 2, axis=3)
    y = act(conv(params["b1"], jnp.concatenate([y, s1], 1)))
    y = conv(params["out"], y).reshape(n, d)
    return jnp.sqrt(jax.nn.sigmoid(gamma)) * chi + y @ to_components


def loss(params, chi, gamma, eps):
    return jnp.mean((apply(params, chi, gamma) - eps) ** 2)


@jax.jit
def adam_step(params, m, v, step, chi, gamma, eps):
    value, g = jax.value_and_grad(loss)(params, chi, gamma, eps)
    lr = a.lr * jnp.minimum(1.0, (step + 1) / 100)
    m = jax.tree_util.tree_map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
    v = jax.tree_util.tree_map(lambda v, g: 0.999 * v + 0.001 * g * g, v, g)
    t = step + 1
    params = jax.tree_util.tree_map(
        lambda p, m, v: p - lr * (m / (1 - 0.9**t)) / (jnp.sqrt(v / (1 - 0.999**t)) + 1e-8),
        params, m, v)
    return params, m, v, value


params = init(jax.random.PRNGKey(0), a.width)
m = jax.tree_util.tree_map(jnp.zeros_like, params)
v = jax.tree_util.tree_map(jnp.zeros_like, params)
start = time.perf_counter()
for step in range(a.steps):
    b = design.training_batch(a.batch, step=step, seed=1)
    params, m, v, value = adam_step(params, m, v, step, b["chi_t"].astype(np.float32),
                                    b["gamma_t"].astype(np.float32), b["eps"].astype(np.float32))
    if step % 250 == 0 or step == a.steps - 1:
        rate = (step + 1) / (time.perf_counter() - start)
        print(f"step {step}: loss {float(value):.4f} ({rate:.1f} steps/s)", flush=True)
train_s = time.perf_counter() - start
np.savez(out / "params.npz", **{f"{k}.{n}": np.asarray(x) for k, q in params.items() for n, x in q.items()})
fn = functools.partial(apply, params)
score = gud.jax.score(fn, design)

jitted = jax.jit(fn)


def forward_s(chi, gamma, reps=20):
    x, g = jnp.asarray(chi), jnp.asarray(gamma)
    jitted(x, g).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(reps):
        jitted(x, g).block_until_ready()
    return (time.perf_counter() - t0) / reps


evaluate(design, score, forward_s, a,
         {"framework": f"jax {jax.__version__}", "device": str(jax.devices()[0]), "train_s": train_s})
