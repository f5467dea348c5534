"""The overhead of a Python callable per sampler step (issue 19).

Samples/s of the exp sampler with gud's built-in Gaussian score against the same score as a
numpy callable (gud -> Python -> numpy -> gud each step), on free-field-like Gaussian data at
L = 8 and 32, batches of 256. Median of 5 repetitions. "per call": the extra seconds of the
numpy callable per sampler step and batch; "crossing only": a whole step with a callable that
returns its input (the cost of passing the arrays to Python and back, plus the sampler's own
arithmetic).

    .venv/bin/python bench/python_callable.py [--samples 2048] [--steps 10]
"""

import argparse
import statistics
import time

import numpy as np

import gud

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--samples", type=int, default=2048)
p.add_argument("--steps", type=int, default=10)
p.add_argument("--batch", type=int, default=256)
p.add_argument("--reps", type=int, default=5)
a = p.parse_args()

print(f"{'L':>3} {'built-in samples/s':>19} {'numpy callable':>15} {'ratio':>6} "
      f"{'per call':>10} {'crossing only':>14}")
for size in (8, 32):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(512, size, size))
    design = gud.Design.fit(data, basis="fourier", prior="matched", schedule="cosine")
    builtin = gud.Score(design, "gaussian")
    sd = design.sigma_data

    def eps_hat(chi, gamma):
        a2 = 1.0 / (1.0 + np.exp(gamma))
        s2 = 1.0 / (1.0 + np.exp(-gamma))
        return np.sqrt(s2) * chi / (a2 * sd + s2)

    callable_score = gud.CallableScore(eps_hat, design)

    def rate(score):
        times = []
        for r in range(a.reps):
            t0 = time.perf_counter()
            gud.sample(design, score, a.samples, seed=r, steps=a.steps, batch=a.batch)
            times.append(time.perf_counter() - t0)
        return a.samples / statistics.median(times)

    # the crossing alone: a callable that computes nothing (arrays in and out, no numpy work)
    zeros = gud.CallableScore(lambda chi, gamma: chi, design)

    b, c, z = rate(builtin), rate(callable_score), rate(zeros)
    calls = a.samples / a.batch * a.steps
    per_call = (a.samples / c - a.samples / b) / calls * 1e3
    crossing = (a.samples / z) / calls * 1e3
    print(f"{size:>3} {b:>19.0f} {c:>15.0f} {c / b:>6.2f} {per_call:>7.3f} ms "
          f"{crossing:>11.3f} ms")
