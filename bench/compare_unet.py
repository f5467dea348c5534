"""gud-nn against PyTorch eager on the same U-Net, in one table: `make bench`.

For each size, `--reps` rounds; each round runs one process of each (`cargo bench -p gud-nn
--bench unet` and bench/unet_pytorch.py, `--per-round` repetitions each, the order alternating
between rounds), so that both see the same minutes of this shared machine. Prints the median of
all repetitions with [min, max] to three significant figures, the ratio gud / PyTorch of the medians,
both processes' peak resident memory (median over the rounds), gud's eps_hat rate (network
plus encoding) and the sampler's per-step overhead outside the network.

    .venv/bin/python bench/compare_unet.py [--sizes 8,16,28,32] [--reps 5]
        [--per-round 2]
"""
import argparse
import json
import math
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def sig3(v):
    """v to three significant figures, without an exponent."""
    if not math.isfinite(v) or v == 0:
        return f"{v}"
    digits = max(0, 2 - int(math.floor(math.log10(abs(v)))))
    return f"{round(v, digits):.{digits}f}"


def stats(v):
    s = sorted(v)
    return s[len(s) // 2], s[0], s[-1]


def cell(v):
    m, lo, hi = stats(v)
    return f"{sig3(m)} [{sig3(lo)}, {sig3(hi)}]"


def merge(rounds):
    """One process's JSON per round -> one dict: rates as lists over the rounds, memory as the
    median over the rounds."""
    out = dict(rounds[0])
    for key, value in rounds[0].items():
        if isinstance(value, list):
            out[key] = [v for r in rounds for v in r[key]]
        elif key.endswith("_mb"):
            out[key] = stats([r[key] for r in rounds])[0]
    out["reps"] = len(rounds)
    return out


def run(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="8,16,28,32")
    ap.add_argument("--reps", type=int, default=5, help="rounds")
    ap.add_argument("--per-round", type=int, default=2, help="repetitions of each process per round")
    a = ap.parse_args()
    gud_cmd = ["cargo", "bench", "-q", "-p", "gud-nn", "--bench", "unet", "--"]
    py_cmd = [sys.executable, str(ROOT / "bench" / "unet_pytorch.py")]
    rows = []
    for size in (int(s) for s in a.sizes.split(",")):
        args = ["--size", str(size), "--reps", str(a.per_round), "--json"]
        got = {"gud": [], "torch": []}
        for r in range(a.reps):
            order = [("gud", gud_cmd), ("torch", py_cmd)]
            if r % 2:
                order.reverse()
            for name, cmd in order:
                got[name].append(run(cmd + args))
        rows.append((size, merge(got["gud"]), merge(got["torch"])))
        print(f"measured {size}x{size}", file=sys.stderr)
    g0, t0 = rows[0][1], rows[0][2]
    print(f"gud-nn (libtorch via tch) against PyTorch {t0['version']} eager, the same U-Net "
          f"(gud.unet.UNet), training batch 64, eval of 256 images (gud: its pool of replicas, "
          f"PyTorch: chunks of 64), {g0['threads']} threads; median [min, max] of "
          f"{a.reps} rounds of {a.per_round} repetitions (one process of each per round, "
          "interleaved)")
    print()
    print("| size | train steps/s gud | PyTorch | ratio | eval samples/s gud | PyTorch | ratio "
          "| peak RSS MB gud | PyTorch | ratio | eps_hat samples/s | sampler overhead |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size, g, t in rows:
        tr = stats(g["net_train_steps_per_s"])[0] / stats(t["net_train_steps_per_s"])[0]
        ev = stats(g["net_eval_samples_per_s"])[0] / stats(t["net_eval_samples_per_s"])[0]
        mem = g["peak_rss_mb"] / t["peak_rss_mb"]
        print(f"| {size}x{size} | {cell(g['net_train_steps_per_s'])} | "
              f"{cell(t['net_train_steps_per_s'])} | {tr:.2f} | "
              f"{cell(g['net_eval_samples_per_s'])} | {cell(t['net_eval_samples_per_s'])} | "
              f"{ev:.2f} | {g['peak_rss_mb']:.0f} | {t['peak_rss_mb']:.0f} | {mem:.2f} | "
              f"{cell(g['score_eval_samples_per_s'])} | "
              f"{100 * stats(g['sampler_step_overhead'])[0]:.1f}% |")
    print()
    print("Exact sampling's full Jacobians (gud only; the d cotangents of a row share its forward "
          "pass):")
    print()
    print("| size | Jacobian rows/s | peak RSS MB with them |")
    print("|---|---|---|")
    for size, g, _ in rows:
        print(f"| {size}x{size} | {cell(g['jacobian_rows_per_s'])} | "
              f"{g['jacobian_peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
