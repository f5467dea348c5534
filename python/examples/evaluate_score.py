"""What python/examples/torch_network.py and jax_network.py share: their arguments, the
design's linear maps as matrices, and the measurements of a trained score (the NLL of the
held-out images, samples for `gud eval --classifier`, the cost of one sampler step through the
callable against the network's forward pass, proposals with their exact log q)."""

import argparse
import json
import pathlib
import time

import numpy as np

import gud


def arguments(doc, out):
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--config", default="examples/images/fashion_mnist_columns.toml")
    p.add_argument("--steps", type=int, default=1500, help="optimisation steps")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--width", type=int, default=32, help="channels of the first level")
    p.add_argument("--samples", type=int, default=2000, help="samples written for gud eval")
    p.add_argument("--nll-samples", type=int, default=1000, help="held-out images of the NLL")
    p.add_argument("--proposals", type=int, default=16, help="proposals with their exact log q")
    p.add_argument("--out", default=out, help="folder of the outputs")
    return p


def design_maps(design):
    """The design's linear maps as (d, d) matrices acting on rows: whitened chi -> centred
    image, gamma's components -> their image, image -> components (the identity's images under
    to_fields, from_components and to_components)."""
    c, h, w = design.shape
    d = design.dim
    eye = np.eye(d)
    mean = design.mean.reshape(1, -1)
    return {
        "to_image": design.to_fields(eye).reshape(d, d) - mean,
        "gamma_image": design.from_components(eye).reshape(d, d) - mean,
        "to_components": design.to_components(eye.reshape(d, c, h, w) + design.mean.reshape(c, h, w)),
    }


def evaluate(design, score, forward_s, a, summary):
    """Measures `score` (trained for `a.steps` steps) and writes samples.npy and summary.json
    into `a.out`; `forward_s(chi, gamma)` times one forward pass of the network alone."""
    out = pathlib.Path(a.out)
    d = design.dim
    # likelihood: -ELBO on the held-out images, dequantised, bits/dim as
    # `gud nll --posterior-variance none` reports them
    nll = gud.nll(design, score, "test", samples=a.nll_samples, steps=100, posterior_variance="none")
    print(f"NLL (-ELBO, 100 steps, {a.nll_samples} test images): "
          f"{nll['bits_per_dim']:.3f} +- {nll['bits_per_dim_se']:.3f} bits/dim")

    # samples with the config's sampler, for `gud eval --classifier`
    start = time.perf_counter()
    fields, report = gud.sample(design, score, a.samples, seed=1)
    sample_s = time.perf_counter() - start
    images = fields[:, 0] if design.shape[0] == 1 else fields
    np.save(out / "samples.npy", images.astype(np.float32))
    print(f"{a.samples} samples ({report['sampler']}, {report['nfe']} NFE) in {sample_s:.1f} s")

    # the crossing: one sampler step through the callable against the network's forward pass
    rows = 256
    chi = np.random.default_rng(0).standard_normal((rows, d)).astype(np.float32)
    gamma = np.tile(design.gamma(0.5).astype(np.float32), (rows, 1))
    forward = forward_s(chi, gamma)
    gud.sample(design, score, rows, seed=2, batch=rows, steps=2)   # a jit compiles this shape
    t0 = time.perf_counter()
    gud.sample(design, score, rows, seed=2, batch=rows)
    step_s = (time.perf_counter() - t0) / report["nfe"]
    print(f"per sampler step of {rows} rows: {1e3 * step_s:.2f} ms through gud "
          f"(callable + sampler), the network's forward pass alone {1e3 * forward:.2f} ms")

    # exact densities: proposals of the exp sampler with their log q (d vjp rows per step)
    start = time.perf_counter()
    _, log_q, _ = gud.propose(design, score, a.proposals, seed=3, kind="exp", steps=10)
    propose_s = (time.perf_counter() - start) / a.proposals
    print(f"{a.proposals} proposals with exact log q: {propose_s:.2f} s each, "
          f"log q / d = {np.mean(log_q) / d:.3f} nats")

    summary.update({
        "steps": a.steps, "nll_bits_per_dim": nll["bits_per_dim"],
        "nll_bits_per_dim_se": nll["bits_per_dim_se"], "sampler": report["sampler"],
        "nfe": report["nfe"], "sample_s": sample_s, "step_ms": 1e3 * step_s,
        "forward_ms": 1e3 * forward, "s_per_proposal": propose_s,
    })
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {out}/samples.npy and summary.json; the Frechet distance: gud eval "
          f"--generated {out}/samples.npy --reference data/fashion-mnist/t10k-images-idx3-ubyte.gz "
          "--resize 16,16 --limit 2000 --classifier CLASSIFIER (scripts/measure-frameworks.sh)")
