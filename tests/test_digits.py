import os
import subprocess
import sys

import numpy as np
import torch

import entropic_fast as ef
from entropic_fast import digits

ROOT = os.path.join(os.path.dirname(__file__), "..")


def test_data_is_scaled_and_split():
    x, y = digits.load("all")
    tr, te = digits.load("train")[0], digits.load("test")[0]
    assert x.shape == (1797, 1, 8, 8) and x.min() == -1 and x.max() == 1 and set(y.tolist()) == set(range(10))
    assert len(tr) + len(te) == 1797


def test_shipped_classifier_accuracy():
    xt, yt = digits.load("test")
    with torch.no_grad():
        acc = (digits.classifier()(xt).argmax(1) == yt).float().mean().item()
    assert acc > 0.97 and abs(acc - digits.record("digits_classifier.pt")["test_accuracy"]) < 1e-6


def test_shipped_denoiser_profile_is_sane():
    """Above the training set's ideal (memorising) denoiser at small sigma, below d*var at large sigma."""
    net = digits.denoiser()
    x, _ = digits.load("train")
    grid = np.array([0.02, 0.05, 0.1, 20.0, 80.0])
    p = ef.profile(net, x, grid, samples=256, progress=False)
    ideal = ef.profile(ef.analytic.PointSet(x.double()), x.double(), grid, samples=256, progress=False)
    assert np.all(p.mse[:3] > ideal.mse[:3] + 3 * p.stderr[:3]), (p.mse[:3], ideal.mse[:3])
    # the bound is d var s^2 / (s^2 + var) ~ d var up here. The shipped model meets it to 1%: at sigma 80 it is
    # 0.5% above (16,384 plain samples: 18.852 +- 0.032 against 18.756), which the control variates' stderr of
    # 0.03 resolves; seed 0 of the old per-unit draws passing a 3-stderr check without the 1% was luck
    bound = 64 * x.var(0).mean().item()
    assert np.all(p.mse[3:] < 1.01 * bound + 3 * p.stderr[3:]), (p.mse[3:], bound)
    assert np.all(p.mse[3:] > 0.98 * bound), (p.mse[3:], bound)  # and not far below: it is the bound up here


def test_denoiser_interface():
    net = digits.denoiser()
    x = torch.randn(3, 1, 8, 8)
    out, logvar = net(x, torch.tensor([0.1, 1.0, 10.0]), return_logvar=True)
    assert out.shape == x.shape and logvar.shape == (3, 1, 1, 1)
    assert torch.allclose(net(x, torch.full((3,), 1e-4)), x, atol=1e-3)  # c_skip -> 1 as sigma -> 0


def test_training_scripts_run(tmp_path):
    for script, args in (("train_digits.py", ["--steps", "3", "--batch", "8"]), ("train_classifier.py", ["--epochs", "1"]),
                         ("train_digits16.py", ["--steps", "2", "--batch", "8"])):
        out = tmp_path / script.replace("train_", "").replace(".py", ".pt")
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script), *args, "--out", str(out)],
                       check=True, capture_output=True)
        assert out.exists() and out.with_suffix(".json").exists()


def test_demo_quick(tmp_path):
    from entropic_fast.demo import run
    text, _ = run(str(tmp_path), quick=True)
    for name in ("profile.npz", "schedules.json", "entropic_times.png", "schedules.png", "spectral_time.png",
                 "samples_8steps.png", "frechet.md"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert "| ddim | 4 | 4 |" in text and "| heun | 3 | 2 |" in text and ef.Profile.load(tmp_path / "profile.npz").spectral


def test_the_second_model_is_a_trained_transformer_on_16x16_digits():
    """digits16: the shipped DiT's record, its data, its features, and a profile between the training set's ideal
    denoiser and the trivial bound."""
    from entropic_fast import digits16
    x, y = digits16.load("train")
    assert x.shape[1:] == (1, 16, 16) and len(x) == 9 * int(0.8 * 1797) and x.min() >= -1 and x.max() <= 1
    assert len(set(digits16.load("test")[0][:1].flatten().tolist())) > 1
    rec = digits.record("digits16_dit.pt")
    net = digits16.denoiser()
    assert rec["parameters"] == sum(p.numel() for p in net.parameters()) and rec["test_loss"] < 0
    assert "DiT" in net.description and isinstance(net.unet, digits16.DiT)
    assert digits16.features()(x[:5]).shape == (5, 128)
    grid = np.array([0.05, 0.5, 5.0, 50.0])
    p = ef.profile(net, x, grid, samples=128, control=None, progress=False)
    bound = np.minimum(256 * grid**2, float(x.reshape(len(x), -1).var(0).sum()))
    assert np.all(p.mse < 1.05 * bound + 3 * p.stderr), (p.mse, bound)
    assert p.mse[1] < 0.5 * bound[1]  # it has learned the data: far below the trivial bound mid-range
