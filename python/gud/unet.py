"""gud's U-Net in PyTorch: load the weights of ``gud export`` and evaluate or fine-tune them.

The module is layer for layer the network of gud-nn (crates/nn/src/unet.rs): residual blocks
(group norm, SiLU, 3x3 convolutions with circular or zero padding), average-pool down-sampling,
nearest up-sampling, skip connections, a noising-state embedding (a linear map of gamma / 10
plus sinusoidal features of its mean) added to every block, and the optional global head.
Parameter names and layouts are those of the exported file, so ``load_state_dict`` takes it
as it is (strict).

    >>> net, meta = gud.unet.load("weights.safetensors")          # doctest: +SKIP
    >>> y = net(x, gamma)                                          # doctest: +SKIP

With the Python package's design of the same config, :func:`score` turns the network into
gud's full eps_hat (SPEC section 4: ``eps_hat = eps_base + U y`` with the input image
``U^T (S chi_t) / input_scale``), a ``gud.Score`` that every sampler of gud can use.

Only this module imports torch; ``import gud`` does not.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

_DTYPES = {"F32": np.float32, "F64": np.float64}


def read_safetensors(path):
    """Reads a safetensors file: (name -> numpy array, metadata dict). No dependency but numpy."""
    raw = Path(path).read_bytes()
    if len(raw) < 8:
        raise ValueError(f"{path}: not a safetensors file (shorter than its header length)")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError(f"{path}: header of {n} bytes runs past the end of the file")
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {}) or {}
    body = memoryview(raw)[8 + n:]
    arrays = {}
    for name, info in header.items():
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {name} is {info['dtype']}, expected F32 or F64")
        begin, end = info["data_offsets"]
        arrays[name] = np.frombuffer(body[begin:end], dtype=dtype).reshape(info["shape"]).copy()
    return arrays, meta


class Conv3(nn.Conv2d):
    """A 3x3 convolution with circular (torus) or zero padding."""

    def __init__(self, c_in, c_out, circular):
        super().__init__(c_in, c_out, 3, padding=1,
                         padding_mode="circular" if circular else "zeros")


class ResBlock(nn.Module):
    def __init__(self, c_in, c_out, emb, groups, circular):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = Conv3(c_in, c_out, circular)
        self.emb = nn.Linear(emb, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.conv2 = Conv3(c_out, c_out, circular)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (self.skip(x) if self.skip is not None else x)


class GlobalHead(nn.Module):
    """Site means of x, x^2, x^3 and the embedding -> one constant per output channel."""

    def __init__(self, c_in, c_out, emb):
        super().__init__()
        self.l1 = nn.Linear(3 * c_in + emb, emb)
        self.l2 = nn.Linear(emb, emb)
        self.out = nn.Linear(emb, c_out)

    def forward(self, x, emb):
        m = lambda t: t.mean(dim=(2, 3))  # noqa: E731
        f = torch.cat([m(x), m(x * x), m(x * x * x), emb], dim=-1)
        return self.out(F.silu(self.l2(F.silu(self.l1(f)))))[:, :, None, None]


class UNet(nn.Module):
    """gud's U-Net: images (B, C_in, H, W) and gamma (B, d) -> the correction (B, C, H, W).

    ``network`` is the ``[network]`` table (a dict: width, multipliers, blocks, groups,
    embedding, padding, global), ``shape`` the field's (C, H, W), ``gamma_channel`` whether
    the input carries the gamma image as C extra planes.
    """

    def __init__(self, network, shape, gamma_channel):
        super().__init__()
        c, h, w = shape
        d = c * h * w
        c_in = 2 * c if gamma_channel else c
        e = network["embedding"]
        g = network["groups"]
        circular = network["padding"] == "circular"
        mult = network["multipliers"]
        width = lambda lvl: network["width"] * mult[lvl]  # noqa: E731
        self.embedding = e
        ch = width(0)
        self.add_module("in", Conv3(c_in, ch, circular))
        skips = []
        self.down = nn.ModuleList()
        for lvl in range(len(mult)):
            level = nn.ModuleList()
            for _ in range(network["blocks"]):
                level.append(ResBlock(ch, width(lvl), e, g, circular))
                ch = width(lvl)
                skips.append(ch)
            self.down.append(level)
        self.mid = ResBlock(ch, ch, e, g, circular)
        # up.l is the level l (built from the coarsest up, as in gud-nn)
        up = {}
        for lvl in reversed(range(len(mult))):
            level = nn.ModuleList()
            for _ in range(network["blocks"]):
                level.append(ResBlock(ch + skips.pop(), width(lvl), e, g, circular))
                ch = width(lvl)
            up[lvl] = level
        self.up = nn.ModuleList([up[lvl] for lvl in range(len(mult))])
        self.out_norm = nn.GroupNorm(g, ch)
        self.add_module("out", Conv3(ch, c, circular))
        self.gamma_embed = nn.Linear(d, e)
        self.emb1 = nn.Linear(2 * e, e)
        self.emb2 = nn.Linear(e, e)
        if network.get("global", False):
            self.add_module("global", GlobalHead(c_in, c, e))
        else:
            self.register_module("global", None)

    def embed(self, gamma):
        g = gamma / 10.0
        mean = g.mean(dim=-1, keepdim=True)
        half = self.embedding // 2
        freqs = torch.exp(torch.arange(half, dtype=g.dtype, device=g.device)
                          * (-math.log(100.0) / half))[None]
        angles = mean * 10.0 * freqs
        features = torch.cat([self.gamma_embed(g), torch.sin(angles), torch.cos(angles)], -1)
        return self.emb2(F.silu(self.emb1(features)))

    def forward(self, x, gamma):
        emb = F.silu(self.embed(gamma))
        h = self._modules["in"](x)
        skips = []
        levels = len(self.down)
        for lvl, level in enumerate(self.down):
            for block in level:
                h = block(h, emb)
                skips.append(h)
            if lvl + 1 < levels:
                h = F.avg_pool2d(h, 2)
        h = self.mid(h, emb)
        for i, lvl in enumerate(reversed(range(levels))):
            for block in self.up[lvl]:
                h = block(torch.cat([h, skips.pop()], 1), emb)
            if i + 1 < levels:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
        out = self._modules["out"](F.silu(self.out_norm(h)))
        head = self._modules["global"]
        return out if head is None else out + head(x, emb)


def load(path, device="cpu"):
    """The network of a ``gud export`` file with its weights, in eval mode, and the metadata
    (network, shape, gamma_channel, input_scale, basis, step, config)."""
    arrays, meta = read_safetensors(path)
    if meta.get("format") != "gud-weights/1":
        raise ValueError(f"{path}: metadata format {meta.get('format')!r}, expected "
                         "'gud-weights/1' (write it with `gud export`)")
    info = {
        "network": json.loads(meta["network"]),
        "shape": tuple(json.loads(meta["shape"])),
        "gamma_channel": meta["gamma_channel"] == "true",
        "input_scale": float(meta["input_scale"]),
        "basis": meta["basis"],
        "step": int(meta["step"]),
        "config": meta["config"],
    }
    net = UNet(info["network"], info["shape"], info["gamma_channel"])
    net.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()}, strict=True)
    return net.to(device).eval(), info


def inputs(design, info, chi_t, gamma_t):
    """The network's inputs of whitened rows chi_t and their gamma_t (both (n, d)): the image
    ``U^T (S chi_t) / input_scale`` and, with the gamma channel, ``U^T gamma_t / 10`` as
    float32 arrays (n, C_in, H, W) and (n, d)."""
    chi_t = np.asarray(chi_t, dtype=np.float64)
    gamma_t = np.asarray(gamma_t, dtype=np.float64)
    mean = design.mean.reshape(design.shape)
    planes = [(design.to_fields(chi_t) - mean) / info["input_scale"]]
    if info["gamma_channel"]:
        planes.append((design.from_components(gamma_t) - mean) / 10.0)
    x = np.concatenate(planes, axis=1).astype(np.float32)
    return x, gamma_t.astype(np.float32)


def score(design, path, device="cpu"):
    """gud's eps_hat of an exported network as a ``gud.Score`` on ``design`` (the
    Python package's design of the run's config): ``eps_base + U y``."""
    import gud

    net, info = load(path, device)
    base = gud.Score(design, "base")
    mean = design.mean.reshape(1, -1)

    def eps_hat(chi_t, gamma_t):
        x, g = inputs(design, info, chi_t, gamma_t)
        with torch.no_grad():
            y = net(torch.from_numpy(x).to(device), torch.from_numpy(g).to(device))
        y = y.double().cpu().numpy().reshape(len(x), -1)
        # U y: to_components subtracts the mean, so add it first
        return base.eps_hat(chi_t, gamma_t) + design.to_components(y + mean)

    return gud.CallableScore(eps_hat, design)
