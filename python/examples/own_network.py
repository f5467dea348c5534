"""Your own network with gud's design space and samplers: a numpy stand-in.

A PyTorch or JAX network plugs in the same way: gud hands it (chi_t, gamma_t) batches in
whitened component space and expects eps_hat back. Here the "network" is a per-component linear
denoiser eps_hat_i = w_i(gamma_i) chi_i, with w_i piecewise constant in gamma_i, fitted by least
squares on gud's own training batches (the loop a network's training would run). It is then
sampled with gud's exponential integrator and made exact with importance weights against the
phi^4 action (SPEC section 9).

    python examples/own_network.py [--size 6] [--steps 10]
"""

import argparse

import numpy as np

import gud

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--size", type=int, default=6, help="lattice size L")
p.add_argument("--steps", type=int, default=10, help="grid points of the exp sampler")
p.add_argument("--samples", type=int, default=2048, help="samples and proposals")
a = p.parse_args()
m2, lam = -4.0, 8.0

# training data: HMC configurations of phi^4, and a design fitted to them
configs, _ = gud.phi4.hmc(a.size, m2, lam, 4096, seed=0, chains=32)
design = gud.Design.fit(configs, mean="zero", basis="fourier", prior="free", schedule="rg")
d = design.dim

# "training": least squares of eps on chi_t per component and gamma bin, from gud's batches
edges = np.linspace(-12.0, 12.0, 49)
sxx = np.zeros((len(edges) + 1, d))
sxy = np.zeros((len(edges) + 1, d))
for step in range(200):
    b = design.training_batch(256, step=step, seed=1)
    k = np.digitize(b["gamma_t"], edges)
    for i in range(d):
        np.add.at(sxx[:, i], k[:, i], b["chi_t"][:, i] ** 2)
        np.add.at(sxy[:, i], k[:, i], b["chi_t"][:, i] * b["eps"][:, i])
gaussian = gud.Score(design, "gaussian")


def network(chi_t, gamma_t):
    """eps_hat: the fitted linear denoiser where a bin has data, the Gaussian score elsewhere."""
    k = np.digitize(gamma_t, edges)
    cols = np.arange(d)[None, :]
    have = sxx[k, cols] > 10.0
    w = np.where(have, sxy[k, cols] / np.maximum(sxx[k, cols], 1e-300), 0.0)
    return np.where(have, w * chi_t, gaussian.eps_hat(chi_t, gamma_t))


score = gud.CallableScore(network, design)
fields, report = gud.sample(design, score, a.samples, seed=2, kind="exp", steps=a.steps)
print(f"sampled {fields.shape[0]} fields of {design.shape} at {report['nfe']} NFE")

# exact: log q of every proposal, weights against exp(-S), reweighted observables
proposals, log_q, _ = gud.propose(design, score, a.samples, seed=2, kind="exp", steps=a.steps)
log_w = gud.log_weights(-gud.phi4.action(proposals[:, 0], m2, lam), log_q)
raw = gud.phi4.observables(proposals[:, 0], m2, lam)
weighted = gud.phi4.observables(proposals[:, 0], m2, lam, log_weights=log_w)
reference = gud.phi4.observables(configs, m2, lam)
print(f"ESS/N = {gud.ess_fraction(log_w):.3f}, "
      f"Metropolis acceptance = {gud.metropolis(log_w)['acceptance']:.3f}")
print(f"{'':>8} {'proposals':>18} {'reweighted':>18} {'HMC':>18}")
for name in ["abs_m", "m2", "binder", "phi2"]:
    row = [raw[name], weighted[name], reference[name]]
    print(f"{name:>8} " + " ".join(f"{o['value']:>9.4f} +- {o['error']:.4f}" for o in row))
