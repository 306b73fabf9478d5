"""The second shipped model, for checking that a schedule rule is not tuned to the first: a small diffusion
transformer (DiT: patches, self-attention, adaLN-zero conditioning; Peebles and Xie 2023) on sklearn's digits
upsampled to 16x16 and shifted by up to one pixel (nine copies of each digit), with EDM preconditioning and
EDM2's loss (``digits.EDMDenoiser``, ``digits.edm2_loss``). Trained by ``scripts/train_digits16.py``; features for
Frechet distances are the digits classifier's on the 2x2-pooled image (:func:`features`).
"""
import functools

import torch
from torch import nn

from . import digits

SIZE, PATCH = 16, 4


@functools.lru_cache(maxsize=1)
def _all():
    x, y = digits.load("all")
    up = nn.functional.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    pad = nn.functional.pad(up, (1, 1, 1, 1), mode="replicate")
    shifted = [pad[:, :, 1 + dy:1 + dy + SIZE, 1 + dx:1 + dx + SIZE] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    return torch.cat(shifted).contiguous(), y.repeat(9)


def load(split="all", seed=0):
    """Upsampled, shifted digits as float32 ``(N, 1, 16, 16)`` in [-1, 1] with labels; the split follows the
    8x8 digits' (a digit's nine shifts stay on one side)."""
    x, y = _all()
    n = len(digits.load("all")[0])
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * n)
    base = {"train": perm[:cut], "test": perm[cut:], "all": torch.arange(n)}[split]
    idx = (base[None, :] + n * torch.arange(9)[:, None]).reshape(-1)
    return x[idx], y[idx]


# ---- the transformer (DiT, adaLN-zero) ----------------------------------------------------------------------

class Block(nn.Module):
    """Pre-norm attention and MLP, each scaled, shifted and gated by the noise embedding (adaLN-zero)."""

    def __init__(self, width, heads, emb):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(width, elementwise_affine=False), nn.LayerNorm(width, elementwise_affine=False)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.ada = nn.Linear(emb, 6 * width)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, h, e):
        s1, b1, g1, s2, b2, g2 = self.ada(e)[:, None].chunk(6, dim=-1)
        a = self.n1(h) * (1 + s1) + b1
        h = h + g1 * self.attn(a, a, a, need_weights=False)[0]
        return h + g2 * self.mlp(self.n2(h) * (1 + s2) + b2)


class DiT(nn.Module):
    """Patches of ``PATCH`` x ``PATCH`` as tokens (16 of them) with learned positions, ``depth`` blocks, a linear
    head back to patches: ``DiT(x, c_noise) -> F_x`` (the backbone of ``digits.EDMDenoiser``)."""

    def __init__(self, width=96, depth=4, heads=4, emb=128, channels=1):
        super().__init__()
        tokens, dim = (SIZE // PATCH) ** 2, channels * PATCH * PATCH
        self.fourier = digits.Fourier(emb)
        self.emb = nn.Sequential(nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.inp = nn.Linear(dim, width)
        self.pos = nn.Parameter(torch.randn(1, tokens, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads, emb) for _ in range(depth))
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.out = nn.Linear(width, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.channels = channels

    def forward(self, x, c_noise):
        b, c, hgt, wid = x.shape
        p = x.reshape(b, c, hgt // PATCH, PATCH, wid // PATCH, PATCH).permute(0, 2, 4, 1, 3, 5)
        p = p.reshape(b, -1, c * PATCH**2)
        e = self.emb(self.fourier(c_noise))
        h = self.inp(p) + self.pos
        for blk in self.blocks:
            h = blk(h, e)
        out = self.out(self.norm(h)).reshape(b, hgt // PATCH, wid // PATCH, c, PATCH, PATCH)
        return out.permute(0, 3, 1, 4, 2, 5).reshape(b, c, hgt, wid)


def network(sigma_data, width=96, depth=4, heads=4):
    """The EDM-preconditioned DiT denoiser: ``net(x, sigma, class_labels=None, return_logvar=False)``."""
    net = digits.EDMDenoiser(sigma_data, backbone=DiT(width, depth, heads))
    net.description = f"digits16 DiT (width={width}, depth={depth}, heads={heads}, sigma_data={sigma_data:.3f})"
    return net


def denoiser():
    """The shipped 16x16 digits transformer (EMA weights), in eval mode on the CPU."""
    rec = digits.record("digits16_dit.pt")
    net = digits._load("digits16_dit.pt", network(rec["sigma_data"], rec["width"], rec["depth"], rec["heads"]),
                       "train_digits16.py")
    net.trained_range = (0.002, 80.0)
    return net


class Features(nn.Module):
    """The digits classifier's 128 features of the 2x2-pooled 16x16 image (the 8x8 it was made from)."""

    def __init__(self):
        super().__init__()
        self.clf = digits.classifier()
        self.description = "digits classifier features of the 2x2-pooled image"

    @torch.no_grad()
    def forward(self, x):
        return self.clf.features(nn.functional.avg_pool2d(x.float(), 2))


def features():
    """The feature callable for ``ef.compare`` on this model."""
    return Features().eval()
