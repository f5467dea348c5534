"""The gud-nn U-Net (width 32, multipliers [1, 2], 1 residual block per level, group norm 8,
embedding 64, circular padding) and its training step (AdamW, grad clipping, EMA) in PyTorch
eager, for comparison with `cargo bench -p gud-nn --bench unet`. Not used by tests or CI.

    python3 bench/unet_pytorch.py            # needs an importable torch (pip install torch)
"""
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(os.cpu_count())


class Conv3(nn.Conv2d):
    def __init__(self, cin, cout):
        super().__init__(cin, cout, 3, padding=0)

    def forward(self, x):
        return super().forward(F.pad(x, (1, 1, 1, 1), mode="circular"))


class ResBlock(nn.Module):
    def __init__(self, cin, cout, emb, groups=8):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, cin), Conv3(cin, cout)
        self.emb = nn.Linear(emb, cout)
        self.norm2, self.conv2 = nn.GroupNorm(groups, cout), Conv3(cout, cout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, e):
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(e)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (self.skip(x) if self.skip is not None else x)


class UNet(nn.Module):
    def __init__(self, d, width=32, mults=(1, 2), emb=64):
        super().__init__()
        self.inc = Conv3(1, width)
        chans, ch, skips = [], width, []
        self.down = nn.ModuleList()
        for m in mults:
            self.down.append(ResBlock(ch, width * m, emb))
            ch = width * m
            skips.append(ch)
        self.mid = ResBlock(ch, ch, emb)
        self.up = nn.ModuleList()
        for m in reversed(mults):
            self.up.append(ResBlock(ch + skips.pop(), width * m, emb))
            ch = width * m
        self.out_norm, self.out = nn.GroupNorm(8, ch), Conv3(ch, 1)
        self.gamma_embed = nn.Linear(d, emb)
        self.emb1, self.emb2 = nn.Linear(2 * emb, emb), nn.Linear(emb, emb)
        self.half = emb // 2

    def forward(self, x, gamma):
        g = gamma / 10
        freqs = torch.exp(torch.arange(self.half) * (-math.log(100) / self.half))
        ang = g.mean(-1, keepdim=True) * 10 * freqs
        e = self.emb2(F.silu(self.emb1(torch.cat([self.gamma_embed(g), ang.sin(), ang.cos()], -1))))
        e = F.silu(e)
        h, skips = self.inc(x), []
        for i, blk in enumerate(self.down):
            h = blk(h, e)
            skips.append(h)
            if i + 1 < len(self.down):
                h = F.avg_pool2d(h, 2)
        h = self.mid(h, e)
        for i, blk in enumerate(self.up):
            h = blk(torch.cat([h, skips.pop()], 1), e)
            if i + 1 < len(self.up):
                h = F.interpolate(h, scale_factor=2, mode="nearest")
        return self.out(F.silu(self.out_norm(h)))


def main():
    print(f"PyTorch {torch.__version__} eager, same U-Net, batch 64, {torch.get_num_threads()} threads")
    print(f"{'size':>6} {'net-only steps/s':>18} {'eval samples/s':>18}")
    for size in (8, 16, 28):
        d = size * size
        net = UNet(d)
        ema = [p.detach().clone() for p in net.parameters()]
        opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
        x, gamma, target = torch.randn(64, 1, size, size), torch.randn(64, d) * 5, torch.randn(64, 1, size, size)

        def step():
            opt.zero_grad()
            loss = (net(x, gamma) - target).square().mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            with torch.no_grad():
                for e, p in zip(ema, net.parameters()):
                    e.mul_(0.999).add_(p, alpha=0.001)

        steps = 40 if size <= 8 else (20 if size <= 16 else 8)
        for _ in range(3):
            step()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        train = steps / (time.perf_counter() - t0)
        xs, gs = torch.randn(256, 1, size, size), torch.randn(1, d).expand(256, d)
        reps = 20 if size <= 8 else 4
        with torch.no_grad():
            net(xs[:64], gs[:64])
            t0 = time.perf_counter()
            for _ in range(reps):
                for k in range(0, 256, 64):
                    net(xs[k:k + 64], gs[k:k + 64])
        ev = reps * 256 / (time.perf_counter() - t0)
        print(f"{size:>4}x{size:<2} {train:>18.2} {ev:>18.0f}")


if __name__ == "__main__":
    main()
