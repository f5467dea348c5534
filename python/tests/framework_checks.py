"""What test_torch.py and test_jax.py check of a framework's network (issue 35): the design,
its linear maps, the exact densities with and without the framework's vjp, bad networks."""

import numpy as np
import pytest

import gud


def free_field_design():
    # free-field data on a 4 x 4 torus: d = 16, a prior that whitens it and the RG schedule
    train, _ = gud.phi4.hmc(4, 0.5, 0.0, 512, seed=3)
    return gud.Design.fit(train, mean="zero", basis="fourier", prior="free", schedule="rg")


def circulant(design):
    """The design's linear maps as (d, d) matrices: whitened chi -> centred field (rows), and
    gamma's components -> their image U^T gamma."""
    d = design.dim
    eye = np.eye(d)
    mean = design.mean.reshape(1, -1)
    to_field = design.to_fields(eye).reshape(d, d) - mean
    gamma_image = design.from_components(eye).reshape(d, d) - mean
    from_field = design.to_components(eye.reshape((d,) + tuple(design.shape)) + design.mean.reshape(design.shape))
    return to_field, gamma_image, from_field


def check_exact_densities(design, with_vjp, reference, atol):
    """nll (ODE, exact divergence) and propose's log q with the framework's vjp equal those of
    `reference` (the same network without vjp: central differences) to `atol` nats per sample."""
    data = design.to_fields(np.random.default_rng(0).standard_normal((16, design.dim)))
    a = gud.nll(design, with_vjp, data, method="ode", tol=1e-6)
    b = gud.nll(design, reference, data, method="ode", tol=1e-6)
    assert abs(a["nats"] - b["nats"]) < atol, (a["nats"], b["nats"])
    f1, q1, _ = gud.propose(design, with_vjp, 32, seed=2, kind="exp", steps=6)
    f2, q2, _ = gud.propose(design, reference, 32, seed=2, kind="exp", steps=6)
    np.testing.assert_allclose(q1, q2, rtol=0, atol=atol)
    assert np.abs(q1 - q2).max() > 0, "the two paths are one"


def check_bad_callables(design, wrap):
    """A network that raises, returns NaN or the wrong shape: a clear error, never a sample."""
    def raises(chi, gamma):
        raise RuntimeError("boom in the network")

    with pytest.raises(RuntimeError, match="boom in the network"):
        gud.sample(design, wrap(raises), 8, steps=4)
    with pytest.raises(ValueError, match="NaN|nan|non-finite"):
        gud.sample(design, wrap(lambda chi, gamma: chi * float("nan")), 8, steps=4)
    with pytest.raises(ValueError, match="shape"):
        gud.sample(design, wrap(lambda chi, gamma: chi[:, :3]), 8, steps=4)




def run_example(name, tmp_path):
    """Runs python/examples/NAME for a few steps on the committed Fashion-MNIST fixture (8 x 8)
    and returns its summary: the example a user runs first keeps working."""
    import json
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[2]
    images = root / "tests" / "fixtures" / "fashion-mnist" / "t10k-64-images-idx3-ubyte.gz"
    cfg = tmp_path / "fm.toml"
    cfg.write_text(
        f"[data]\nkind = 'images'\ntrain = '{images}'\ntest = '{images}'\nresize = [8, 8]\n"
        "[design]\nbasis = { kind = 'pixel' }\nprior = { kind = 'white' }\n"
        "schedule = { kind = 'cosine' }\n[sampler]\nkind = 'exp'\nsteps = 4\n")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(root / "python" / "examples" / name), "--config", str(cfg),
                        "--steps", "5", "--width", "8", "--samples", "8", "--nll-samples", "8",
                        "--proposals", "1", "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "samples.npy").exists()
    return json.loads((out / "summary.json").read_text())
