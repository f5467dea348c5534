"""Your PyTorch network with gud, end to end: train, sample, likelihood, exact densities.

A small convolutional eps_hat in PyTorch is trained from Python on gud's training batches of
Fashion-MNIST 16 x 16 (``make data``) under the design of
examples/images/fashion_mnist_columns.toml (pixel basis, white prior, the sequential column
schedule), then sampled with the config's sampler, its NLL computed on the held-out images
(the ELBO, as ``gud nll`` does), and proposals drawn with their exact log q (torch.autograd's
vector-Jacobian products). It prints the training time, bits/dim, the cost of one sampler
step through the callable against the network's own forward pass, and writes the samples for
``gud eval --classifier`` (the classifier Frechet distance).

    make data
    .venv/bin/python python/examples/torch_network.py [--steps 1500] [--device cuda]
"""

import pathlib
import sys
import time

import torch
from torch import nn
from torch.nn import functional as F

import gud
import gud.torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from evaluate_score import arguments, design_maps, evaluate  # noqa: E402

p = arguments(__doc__, "out/torch_network")
p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps, ...")
a = p.parse_args()
torch.manual_seed(0)
pathlib.Path(a.out).mkdir(parents=True, exist_ok=True)

design = gud.Design.from_config(a.config)          # the config's data, design and sampler
c, h, w = design.shape
d = design.dim
maps = design_maps(design)


class Block(nn.Module):
    def __init__(self, c_in, c_out, groups=8):
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(min(groups, c_in), c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.n2, self.c2 = nn.GroupNorm(groups, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x):
        y = self.c1(F.silu(self.n1(x)))
        return self.skip(x) + self.c2(F.silu(self.n2(y)))


class EpsNet(nn.Module):
    """eps_hat(chi_t, gamma_t) on (n, d) whitened rows: the Gaussian denoiser of unit-variance
    components, sqrt(sigmoid(gamma)) chi, plus a two-level U-Net's correction of the image and
    the gamma image (the per-pixel noising state of the column schedule)."""

    def __init__(self, width):
        super().__init__()
        for name, m in maps.items():
            self.register_buffer(name, torch.tensor(m, dtype=torch.float32))
        self.inp = nn.Conv2d(2 * c, width, 3, padding=1)
        self.down1 = Block(width, width)
        self.down2 = Block(width, 2 * width)
        self.mid = Block(2 * width, 2 * width)
        self.up2 = Block(4 * width, width)
        self.up1 = Block(2 * width, width)
        self.out = nn.Conv2d(width, c, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, chi, gamma):
        n = chi.shape[0]
        x = torch.cat([(chi @ self.to_image).view(n, c, h, w),
                       (gamma @ self.gamma_image / 10).view(n, c, h, w)], 1)
        s1 = self.down1(self.inp(x))
        s2 = self.down2(F.avg_pool2d(s1, 2))
        y = self.mid(s2)
        y = self.up2(torch.cat([y, s2], 1))
        y = self.up1(torch.cat([F.interpolate(y, scale_factor=2), s1], 1))
        y = self.out(F.silu(y)).reshape(n, d)
        return torch.sqrt(torch.sigmoid(gamma)) * chi + y @ self.to_components


net = EpsNet(a.width).to(a.device)
opt = torch.optim.Adam(net.parameters(), lr=a.lr)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 100))
start = time.perf_counter()
for step in range(a.steps):
    b = gud.torch.batch(design, a.batch, step=step, seed=1, device=a.device)
    loss = ((net(b["chi_t"], b["gamma_t"]) - b["eps"]) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    if step % 250 == 0 or step == a.steps - 1:
        rate = (step + 1) / (time.perf_counter() - start)
        print(f"step {step}: loss {loss.item():.4f} ({rate:.1f} steps/s)", flush=True)
train_s = time.perf_counter() - start
net.eval()
torch.save(net.state_dict(), pathlib.Path(a.out) / "eps_net.pt")
score = gud.torch.score(net, design)


def forward_s(chi, gamma, reps=20):
    with torch.no_grad():
        x, g = torch.from_numpy(chi).to(a.device), torch.from_numpy(gamma).to(a.device)
        net(x, g)
        t0 = time.perf_counter()
        for _ in range(reps):
            net(x, g)
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / reps


evaluate(design, score, forward_s, a,
         {"framework": f"torch {torch.__version__}", "device": a.device, "train_s": train_s})
