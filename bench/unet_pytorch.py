"""gud's U-Net in PyTorch eager at one size per process, for bench/compare_unet.py.

The model is gud.unet.UNet of the Python package (python/gud/unet.py), which the tests check
layer for layer against gud-nn (the default [network]: width 32, multipliers [1, 2], one block
per level, group norm 8, embedding 64, circular padding, no global head, no gamma channel: the
Fourier basis of the Rust bench). The training step is gud-nn's: forward, mean squared error,
backward, gradient clipping, AdamW, EMA. Needs an importable torch (`make bench` installs it).

    python3 bench/unet_pytorch.py --size 16 [--reps 5] [--json]
"""
import argparse
import importlib.util
import json
import os
import pathlib
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_unet_module():
    """python/gud/unet.py alone (it imports gud only inside `score`): no build needed."""
    spec = importlib.util.spec_from_file_location("gud_unet", ROOT / "python" / "gud" / "unet.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


NETWORK = {"width": 32, "multipliers": [1, 2], "blocks": 1, "groups": 8, "embedding": 64,
           "padding": "circular", "global": False}


def rates(reps, work, f):
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        out.append(work / (time.perf_counter() - t0))
    return out


def peak_rss_mb():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=8)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--profile-eval", type=float, default=None,
                    help="only the forward loop for this many seconds (for perf record)")
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count())
    unet = load_unet_module()
    size, d = a.size, a.size * a.size
    torch.manual_seed(0)
    net = unet.UNet(NETWORK, (1, size, size), gamma_channel=False)
    params = list(net.parameters())
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=1e-4)
    x = torch.randn(64, 1, size, size)
    gamma = torch.randn(64, d) * 5
    target = torch.randn(64, 1, size, size)

    def step():
        opt.zero_grad()
        loss = (net(x, gamma) - target).square().mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            for e, p in zip(ema, params):
                e.mul_(0.999).add_(p, alpha=0.001)

    steps = 20 if size <= 8 else (8 if size <= 16 else 3)
    for _ in range(3):
        step()

    def train():
        for _ in range(steps):
            step()

    if a.profile_eval is not None:
        xp, gp = torch.randn(64, 1, size, size), torch.randn(1, d).expand(64, d)
        until = time.perf_counter() + a.profile_eval
        with torch.no_grad():
            while time.perf_counter() < until:
                net(xp, gp)
        return
    train_rates = rates(a.reps, steps, train)
    n = 256
    xs, gs = torch.randn(n, 1, size, size), torch.randn(1, d).expand(n, d)
    evals = 8 if size <= 8 else 2

    def ev():
        with torch.no_grad():
            for _ in range(evals):
                for k in range(0, n, 64):
                    net(xs[k:k + 64], gs[k:k + 64])

    with torch.no_grad():
        net(xs[:64], gs[:64])
    eval_rates = rates(a.reps, evals * n, ev)
    rss = peak_rss_mb()
    if a.json:
        print(json.dumps({"impl": "pytorch", "version": torch.__version__, "size": size,
                          "threads": torch.get_num_threads(), "reps": a.reps,
                          "net_train_steps_per_s": train_rates,
                          "net_eval_samples_per_s": eval_rates, "peak_rss_mb": rss}))
    else:
        med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
        print(f"PyTorch {torch.__version__} eager, gud.unet.UNet {size}x{size}, batch 64, "
              f"{torch.get_num_threads()} threads, median of {a.reps}")
        print(f"  net-only steps/s   {med(train_rates):.2f}")
        print(f"  net eval samples/s {med(eval_rates):.1f}")
        print(f"  peak RSS           {rss:.0f} MB")


if __name__ == "__main__":
    main()
