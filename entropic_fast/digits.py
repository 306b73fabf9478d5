"""The embedded default: scikit-learn's bundled digits, a small EDM denoiser trained on them, and a classifier.

Everything here is trained by the project's own scripts (``scripts/train_digits.py``,
``scripts/train_classifier.py``) and ships as weights in ``entropic_fast/weights`` with a record of
how it was made; nothing is downloaded.
"""
import functools
import json
import math
import os

import numpy as np
import torch
from torch import nn

WEIGHTS = os.path.join(os.path.dirname(__file__), "weights")


@functools.lru_cache(maxsize=1)
def _all_digits():
    """All 1797 digits, parsed once from scikit-learn's bundled file."""
    from .checks import optional

    d = optional("sklearn.datasets", "demo").load_digits()
    return torch.tensor(d.images, dtype=torch.float32)[:, None] / 8.0 - 1.0, torch.tensor(d.target, dtype=torch.int64)


def load(split="all", seed=0):
    """Digits as float32 ``(N, 1, 8, 8)`` in [-1, 1] and int64 labels; ``split`` is train (80%), test or all."""
    x, y = _all_digits()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * len(x))
    idx = {"train": perm[:cut], "test": perm[cut:], "all": torch.arange(len(x))}[split]
    return x[idx], y[idx]


# ---------------------------------------------------------------- the denoiser (EDM / EDM2 style)


class Fourier(nn.Module):
    """Random Fourier features of the noise level (EDM2's MPFourier)."""

    def __init__(self, channels, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("freqs", 2 * math.pi * torch.randn(channels, generator=g))
        self.register_buffer("phases", 2 * math.pi * torch.rand(channels, generator=g))

    def forward(self, x):
        return torch.cos(torch.outer(x.float(), self.freqs) + self.phases) * math.sqrt(2)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the noise embedding added in between."""

    def __init__(self, cin, cout, emb):
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(8, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.e = nn.Linear(emb, cout)
        self.n2, self.c2 = nn.GroupNorm(8, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.c1(nn.functional.silu(self.n1(x))) + self.e(emb)[:, :, None, None]
        return self.skip(x) + self.c2(nn.functional.silu(self.n2(h)))


class UNet(nn.Module):
    """A compact two-level UNet: H x W -> H/2 x W/2 -> H x W with skip connections (8x8 digits by default;
    ``channels`` and ``ch`` scale it, e.g. to 4x64x64 latents and ~300M parameters with ``ch=768``)."""

    def __init__(self, ch=32, emb=128, channels=1):
        super().__init__()
        self.fourier = Fourier(emb)
        self.emb = nn.Sequential(nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.inp = nn.Conv2d(channels, ch, 3, padding=1)
        self.d1, self.d2 = ResBlock(ch, ch, emb), ResBlock(ch, 2 * ch, emb)
        self.m1, self.m2 = ResBlock(2 * ch, 2 * ch, emb), ResBlock(2 * ch, 2 * ch, emb)
        self.u1, self.u2 = ResBlock(4 * ch, 2 * ch, emb), ResBlock(3 * ch, ch, emb)
        self.out = nn.Sequential(nn.GroupNorm(8, ch), nn.SiLU(), nn.Conv2d(ch, channels, 3, padding=1))

    def forward(self, x, c_noise):
        e = self.emb(self.fourier(c_noise))
        h0 = self.inp(x)
        h1 = self.d2(self.d1(h0, e), e)
        h = self.m2(self.m1(nn.functional.avg_pool2d(h1, 2), e), e)
        h = self.u1(torch.cat([nn.functional.interpolate(h, scale_factor=2.0), h1], 1), e)
        return self.out(self.u2(torch.cat([h, h0], 1), e))


class EDMDenoiser(nn.Module):
    """EDM preconditioning (Karras et al. 2022, Table 1) around the UNet, with EDM2's learned
    uncertainty ``logvar(sigma)`` (Karras et al. 2024): ``net(x, sigma, class_labels=None, return_logvar=False)``."""

    def __init__(self, sigma_data=0.5, ch=32, logvar_channels=128, channels=1, backbone=None):
        super().__init__()
        self.sigma_data = float(sigma_data)
        self.unet = UNet(ch, channels=channels) if backbone is None else backbone  # backbone(x, c_noise) -> F_x
        self.logvar_fourier = Fourier(logvar_channels, seed=1)
        self.logvar_linear = nn.Linear(logvar_channels, 1)
        self.description = f"digits EDM UNet (ch={ch}, sigma_data={self.sigma_data:.3f})"

    def forward(self, x, sigma, class_labels=None, return_logvar=False):
        sd = self.sigma_data
        s = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1, 1, 1, 1).expand(len(x), 1, 1, 1)
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / (s**2 + sd**2).sqrt()
        c_in = 1 / (sd**2 + s**2).sqrt()
        c_noise = s.flatten().log() / 4
        xf = x.float()
        out = (c_skip * xf + c_out * self.unet(c_in * xf, c_noise)).to(x.dtype)
        if return_logvar:
            return out, self.logvar_linear(self.logvar_fourier(c_noise)).reshape(-1, 1, 1, 1)
        return out


def edm2_loss(net, x0, generator=None, p_mean=-1.2, p_std=1.2, p_wide=0.25, sigma_range=(0.002, 80.0),
              recorder=None):
    """EDM2's uncertainty-weighted loss: ``w / exp(u) * (D - x0)^2 + u`` per element. Sigmas are EDM's
    log-normal, except a fraction ``p_wide`` drawn log-uniformly over ``sigma_range``, so that the whole
    profiled grid is trained (log-normal alone never reaches sigma = 80). A ``recorder``
    (``entropic_fast.Recorder``) records each sample's error ``||D - x0||^2`` at its sigma (no draw of its own)."""
    n = torch.randn(len(x0), generator=generator, device=x0.device)
    wide = torch.rand(len(x0), generator=generator, device=x0.device)
    lo, hi = math.log(sigma_range[0]), math.log(sigma_range[1])
    log_sigma = torch.where(wide < p_wide, lo + (hi - lo) * torch.rand(len(x0), generator=generator,
                                                                        device=x0.device), n * p_std + p_mean)
    sigma = log_sigma.exp()
    sd = net.sigma_data
    w = (sigma**2 + sd**2) / (sigma * sd) ** 2
    noise = torch.randn(x0.shape, generator=generator, device=x0.device)
    den, logvar = net(x0 + sigma.view(-1, 1, 1, 1) * noise, sigma, return_logvar=True)
    if recorder is not None:
        recorder.add(sigma, den, x0)
    return (w.view(-1, 1, 1, 1) / logvar.exp() * (den - x0) ** 2 + logvar).mean()


# ---------------------------------------------------------------- the classifier (for Frechet distances)


class Classifier(nn.Module):
    """A small CNN for 8x8 digits; ``features`` is its 128-d penultimate layer."""

    def __init__(self):
        super().__init__()
        layers = [nn.Conv2d(1, 32, 3, padding=1), nn.SiLU(), nn.Conv2d(32, 64, 3, padding=1), nn.SiLU(),
                  nn.AvgPool2d(2), nn.Flatten(), nn.Linear(64 * 16, 128), nn.SiLU()]
        self.body = nn.Sequential(*layers)  # the same indices: the shipped weights keep their keys
        self.head = nn.Linear(128, 10)

    def features(self, x):
        return self.body(x.float())

    def forward(self, x):
        return self.head(self.features(x))


# ---------------------------------------------------------------- shipped weights


def _load(name, module, script):
    path = os.path.join(WEIGHTS, name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: make it with python scripts/{script}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    module.load_state_dict(state)
    return module.eval()


def record(name):
    """The JSON record of how a shipped weight file was made."""
    with open(os.path.join(WEIGHTS, name.replace(".pt", ".json"))) as f:
        return json.load(f)


def denoiser():
    """The shipped digits denoiser (EMA weights), in eval mode on the CPU."""
    rec = record("digits_edm.pt")
    net = _load("digits_edm.pt", EDMDenoiser(rec["sigma_data"], rec["channels"]), "train_digits.py")
    net.trained_range = (0.002, 80.0)  # edm2_loss: a quarter of the sigmas log-uniform on [0.002, 80]
    return net


def classifier():
    """The shipped digits classifier, in eval mode on the CPU."""
    return _load("digits_classifier.pt", Classifier(), "train_classifier.py")


@torch.no_grad()
def features(x, net=None, batch=1024):
    """Classifier features (N, 128) of digits ``x`` (N, 1, 8, 8), as float64 ndarray."""
    net = net or classifier()
    return np.concatenate([net.features(x[i:i + batch]).double().numpy() for i in range(0, len(x), batch)])
