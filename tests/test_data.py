"""EDM / EDM2 dataset readers (entropic_fast.data), guidance and pickles (adapters.edm), built on the fly."""
import io
import json
import os
import subprocess
import sys
import textwrap
import types
import zipfile

import numpy as np
import pytest
import torch

import entropic_fast as ef
from entropic_fast import data
from entropic_fast.adapters import edm
from entropic_fast.cli import main
from entropic_fast.errors import InputError

import PIL.Image as PIL  # noqa: E402  the demo extra (make test installs it)


def png(a):
    buf = io.BytesIO()
    PIL.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def write(files, root, as_zip):
    """``{name: bytes}`` into a folder or a zip, as dataset_tool.py lays them out."""
    if as_zip:
        path = root / "ds.zip"
        with zipfile.ZipFile(path, "w") as z:
            for n, b in files.items():
                z.writestr(n, b)
        return path
    for n, b in files.items():
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        (root / n).write_bytes(b)
    return root


def image_set(n=6, shape=(8, 6, 3), labels=True, seed=0):
    rng = np.random.default_rng(seed)
    imgs = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]
    names = [f"{i // 1000:05d}/img{i:08d}.png" for i in range(n)]
    files = {nm: png(im if shape[-1] != 1 else im[..., 0]) for nm, im in zip(names, imgs)}
    if labels:
        files["dataset.json"] = json.dumps({"labels": [[nm, i % 3] for i, nm in enumerate(names)]}).encode()
    return files, imgs, names


@pytest.mark.parametrize("as_zip", [False, True])
@pytest.mark.parametrize("shape", [(8, 6, 3), (5, 7, 1)])
def test_images_read_the_pixels_and_their_labels(tmp_path, as_zip, shape):
    files, imgs, _ = image_set(shape=shape)
    ds = data.Images(write(files, tmp_path, as_zip))
    assert len(ds) == 6 and ds.shape == (shape[2], shape[0], shape[1])
    want = torch.from_numpy(np.stack([im.transpose(2, 0, 1) for im in imgs]).astype(np.float32) / 127.5 - 1)
    torch.testing.assert_close(ds.rows([0, 1, 2, 3, 4, 5]), want, rtol=0, atol=0)
    x, lab = ds.sample(40, generator=torch.Generator().manual_seed(1))
    idx = torch.randint(6, (40,), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(x, want[idx], rtol=0, atol=0)
    assert lab.tolist() == (idx % 3).tolist()
    assert isinstance(data.Images(write(files, tmp_path, as_zip), labels=False).sample(3), torch.Tensor)


def test_zip_and_folder_draw_the_same_rows_and_fingerprints_see_a_changed_file(tmp_path):
    files, _, names = image_set()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    z, f = data.Images(write(files, tmp_path / "a", True)), data.Images(write(files, tmp_path / "b", False))
    g = [torch.Generator().manual_seed(3) for _ in range(2)]
    torch.testing.assert_close(z.sample(9, g[0])[0], f.sample(9, g[1])[0], rtol=0, atol=0)
    before = z.fingerprint()
    assert before == data.Images(tmp_path / "a" / "ds.zip").fingerprint()
    files[names[2]] = png(np.zeros((8, 6, 3), np.uint8))
    (tmp_path / "c").mkdir()
    assert data.Images(write(files, tmp_path / "c", True)).fingerprint() != before
    assert data.Images(tmp_path / "a" / "ds.zip", labels=False).fingerprint() != before


def test_labels_travel_with_their_rows_through_profile(tmp_path):
    """One image per class and a denoiser that returns its class's image: zero error iff every row met its label."""
    files, imgs, names = image_set(n=3)
    files["dataset.json"] = json.dumps({"labels": [[nm, i] for i, nm in enumerate(names)]}).encode()
    ds = data.Images(write(files, tmp_path, True))
    table = ds.rows([0, 1, 2])
    p = ef.profile(lambda x, s, y: table[y.long()], ds, ef.sigma_grid(4), samples=40, batch_size=24, progress=False)
    assert np.all(p.count == 40) and np.all(p.sum == 0)
    with pytest.raises(InputError, match="carries labels but the denoiser"):
        ef.profile(lambda x, s: x, ds, ef.sigma_grid(4), samples=4, progress=False)
    q = ef.profile(lambda x, s: 0 * x, data.Images(tmp_path / "ds.zip", labels=False), ef.sigma_grid(4), samples=64,
                   progress=False)
    np.testing.assert_allclose(q.mse, (table**2).flatten(1).sum(1).mean().item(), rtol=0.15)


def latent_set(tmp_path, n=4, c=4, std=0.0, labels=True):
    rng = np.random.default_rng(0)
    means = [rng.normal(size=(c, 3, 5)).astype(np.float32) for _ in range(n)]
    files = {f"00000/img-mean-std-{i:08d}.npy": _npy(np.concatenate([m, np.full_like(m, std)])) for i, m in enumerate(means)}
    if labels:
        files["dataset.json"] = json.dumps({"labels": [[k, i] for i, k in enumerate(files)]}).encode()
    return write(files, tmp_path, True), means


def _npy(a):
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_latents_apply_edm2_scale_and_bias(tmp_path):
    path, means = latent_set(tmp_path)
    ds = data.Latents(path)
    np.testing.assert_allclose(ds.scale, [0.5 / 4.17, 0.5 / 4.62, 0.5 / 3.71, 0.5 / 3.28])
    np.testing.assert_allclose(ds.bias, [-5.81 * 0.5 / 4.17, -3.25 * 0.5 / 4.62, -0.12 * 0.5 / 3.71, 2.15 * 0.5 / 3.28])
    x, lab = ds.sample(10, torch.Generator().manual_seed(0))
    want = np.stack([means[i] for i in lab.tolist()]) * ds.scale[:, None, None] + ds.bias[:, None, None]
    np.testing.assert_allclose(x.numpy(), want, rtol=1e-6, atol=1e-6)  # std 0: no noise


def test_latents_draw_mean_plus_std_noise(tmp_path):
    (tmp_path / "n").mkdir()
    path, means = latent_set(tmp_path / "n", n=1, c=2, std=0.7, labels=False)
    ds = data.Latents(path, scale=2.0, bias=(0.5, -1.0))
    x = ds.sample(4000, torch.Generator().manual_seed(0))
    assert x.shape == (4000, 2, 3, 5) and ds.shape == (2, 3, 5) and ds.stored_shape == (4, 3, 5)
    raw = (x - torch.tensor([0.5, -1.0]).view(1, 2, 1, 1)) / 2.0
    np.testing.assert_allclose(raw.mean(0).numpy(), means[0], atol=4 * 0.7 / np.sqrt(4000) * 1.5)
    np.testing.assert_allclose(raw.std(0).numpy(), 0.7, rtol=0.08)
    again = ds.sample(4000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(x, again, rtol=0, atol=0)


def test_profile_of_a_dataset_resumes_from_its_checkpoint(tmp_path):
    path, _ = latent_set(tmp_path, labels=False)
    ds, grid = data.Latents(path), ef.sigma_grid(4)
    net = ef.analytic.Gaussian(0.3, (4, 3, 5))
    whole = ef.profile(net, ds, grid, samples=64, batch_size=32, progress=False)
    ck = tmp_path / "ck.npz"
    part = ef.profile(net, ds, grid, samples=64, batch_size=32, progress=False, checkpoint=ck, shard=(0, 1))
    np.testing.assert_array_equal(part.sum, whole.sum)
    with pytest.raises(InputError, match="fingerprints"):  # other data, same shapes
        ef.profile(net, data.Latents(path, scale=1.0), grid, samples=64, batch_size=32, progress=False, checkpoint=ck)


@pytest.mark.parametrize("setup, match", [
    (lambda p: p / "missing", "no such file or folder"),
    (lambda p: p, "holds no"),
    (lambda p: ((p / "x.zip").write_bytes(b"not a zip"), p / "x.zip")[1], "neither a folder nor a zip"),
    (lambda p: 3, "dataset must be a path, got 3"),
])
def test_bad_datasets_say_what_is_wrong(tmp_path, setup, match):
    with pytest.raises(InputError, match=match):
        data.Images(setup(tmp_path))


def test_bad_files_name_the_file(tmp_path):
    files, _, names = image_set()
    files[names[3]] = png(np.zeros((4, 4, 3), np.uint8))
    files[names[4]] = b"garbage"
    ds = data.Images(write(files, tmp_path, True))
    with pytest.raises(InputError, match=r"img00000003.png has shape \(3, 4, 4\)"):
        ds.rows([3])
    with pytest.raises(InputError, match="cannot decode 00000/img00000004.png"):
        ds.rows([4])
    files.pop(names[3])
    files.pop(names[4])
    files["00000/extra.png"] = png(np.zeros((8, 6, 3), np.uint8))
    (tmp_path / "u").mkdir()
    with pytest.raises(InputError, match="no label for '00000/extra.png'"):
        data.Images(write(files, tmp_path / "u", True))


def test_encoded_images_match_the_vae(tmp_path):
    import diffusers  # the test extra (make test installs it)
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",),
                                  up_block_types=("UpDecoderBlock2D",), latent_channels=4, norm_num_groups=4,
                                  sample_size=8).eval()
    files, _, _ = image_set(shape=(8, 8, 3), labels=False)
    imgs = data.Images(write(files, tmp_path, True))
    enc = data.Encoded(imgs, vae, batch_size=3)
    assert enc.scale == vae.config.scaling_factor
    z = enc.sample(5, torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    x = imgs.sample(5, g)
    with torch.no_grad():
        dist = vae.encode(x).latent_dist
    want = (dist.mean + dist.std * torch.randn(dist.mean.shape, generator=g)) * enc.scale
    assert z.shape == (5, 4, 8, 8)
    torch.testing.assert_close(z, want, rtol=1e-5, atol=1e-5)
    p = ef.profile(lambda x, s: 0 * x, enc, ef.sigma_grid(3), samples=8, progress=False)
    assert np.all(p.count == 8)


class _Dist(torch.nn.Module):
    """A VAE-like module whose encode() returns what ``kind`` says (issue 39: fake VAEs)."""

    def __init__(self, kind):
        super().__init__()
        self.kind, self.w = kind, torch.nn.Parameter(torch.zeros(1))

    def encode(self, x):
        rows = {"rows": 1}.get(self.kind, len(x))
        dist = types.SimpleNamespace(mean=torch.zeros(rows, 4), std=torch.ones(rows, 4))
        return "latent" if self.kind == "str" else types.SimpleNamespace(latent_dist=dist)


@pytest.mark.parametrize("vae, match", [
    (None, "vae must be a torch module with encode"), (object(), "vae must be a torch module with encode"),
    (torch.nn.Linear(2, 2), "vae must be a torch module with encode"),
    (_Dist("str"), "must return an output with a latent_dist"), (_Dist("rows"), "one row per image"),
])
def test_a_vae_that_is_not_one_is_named(vae, match):
    images = types.SimpleNamespace(sample=lambda n, generator=None: torch.zeros(n, 3, 8, 8), labels=None)
    with pytest.raises(InputError, match=match):
        data.Encoded(images, vae).sample(2) if isinstance(vae, _Dist) else data.Encoded(images, vae)
    with pytest.raises(InputError, match=match):
        data.encode(vae, torch.zeros(2, 3, 8, 8))


# ---------------------------------------------------------------- guidance and pickles


class TinyEDM(torch.nn.Module):
    """EDM's calling convention ``net(x, sigma, class_labels)``, labels changing the output."""

    def __init__(self, label_dim=3, gain=1.0):
        super().__init__()
        self.label_dim = label_dim
        self.w = torch.nn.Parameter(torch.linspace(-1, 1, max(label_dim, 1)) * gain)

    def forward(self, x, sigma, class_labels=None):
        shift = 0.0 if class_labels is None else (class_labels @ self.w).view(-1, *[1] * (x.ndim - 1))
        return x / (1 + sigma.view(-1, *[1] * (x.ndim - 1)) ** 2) + shift


def test_guided_weight_one_is_the_plain_net_and_other_weights_extrapolate():
    net, guide = TinyEDM(), TinyEDM(gain=0.3)
    x, s, y = torch.randn(6, 2, 4, 4), torch.rand(6) + 0.1, torch.arange(6) % 3
    plain = edm.denoiser(net)(x, s, y)
    torch.testing.assert_close(edm.guided(net, guide, 1.0)(x, s, y), plain, rtol=0, atol=0)
    d, dg = plain, edm.denoiser(guide)(x, s, y)
    torch.testing.assert_close(edm.guided(net, guide, 2.5)(x, s, y), dg + 2.5 * (d - dg))
    uncond = net(x, s, None)
    torch.testing.assert_close(edm.guided(net, None, 1.7)(x, s, y), uncond + 1.7 * (d - uncond))
    with pytest.raises(InputError, match="unconditional"):
        edm.guided(TinyEDM(label_dim=0), None, 2.0)
    with pytest.raises(InputError, match="weight must be a real number"):
        edm.guided(net, guide, "2")


def test_guided_profile_differs_where_the_guide_does():
    net, data_, labels = TinyEDM(), torch.randn(64, 2, 4, 4) * 0.5, torch.arange(64) % 3
    grid = ef.sigma_grid(6)
    kw = dict(samples=64, labels=labels, seed=1, progress=False)
    plain = ef.profile(edm.denoiser(net), data_, grid, **kw)
    same = ef.profile(edm.guided(net, TinyEDM(), 3.0), data_, grid, **kw)  # a guide equal to the net: no change
    np.testing.assert_allclose(same.mse, plain.mse, rtol=1e-6)
    other = ef.profile(edm.guided(net, TinyEDM(gain=0.2), 3.0), data_, grid, **kw)
    assert np.all(np.abs(other.mse / plain.mse - 1) > 0.01)


CODE = textwrap.dedent("""
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.label_dim = 0
            self.scale = torch.nn.Parameter(torch.tensor(0.5))

        def forward(self, x, sigma, class_labels=None):
            return self.scale * x
""")


def test_load_edm_pickle_with_and_without_its_code(tmp_path):
    root = tmp_path / "edm_code"
    (root / "ef_test_training").mkdir(parents=True)
    (root / "ef_test_training" / "__init__.py").write_text("")
    (root / "ef_test_training" / "tinynet.py").write_text(CODE)
    pkl = tmp_path / "net.pkl"
    subprocess.run([sys.executable, "-c", f"import pickle, sys; sys.path.insert(0, {str(root)!r}); "
                    "from ef_test_training.tinynet import Net; "
                    f"pickle.dump({{'ema': Net(), 'step': 3}}, open({str(pkl)!r}, 'wb'))"], check=True)
    with pytest.warns(UserWarning, match="runs code"):
        with pytest.raises(InputError, match="needs the module 'ef_test_training'.*pass code_root="):
            edm.load(pkl)
    with pytest.warns(UserWarning, match="load only pickles you trust"):
        net = edm.load(pkl, code_root=root)
    assert not net.training and not net.scale.requires_grad
    torch.testing.assert_close(edm.denoiser(net)(torch.ones(2, 3), torch.ones(2)), torch.full((2, 3), 0.5))
    with pytest.raises(InputError, match="no network under 'model'"), pytest.warns(UserWarning):
        edm.load(pkl, code_root=root, key="model")
    with pytest.raises(InputError, match="no such file"):
        edm.load(tmp_path / "nope.pkl")
    with pytest.raises(InputError, match="not a folder"):
        edm.load(pkl, code_root=tmp_path / "nowhere")
    # the whole command line: pickle, dataset zip, guidance, grid, output
    files, _, _ = image_set(shape=(3, 2, 1), labels=True)
    (tmp_path / "d").mkdir()
    ds = write(files, tmp_path / "d", True)
    out = tmp_path / "p.npz"
    argv = ["profile", "--model", str(pkl), "--code-root", str(root), "--data", str(ds), "--grid", "0.01", "10", "4",
            "--samples", "32", "--out", str(out), "--quiet"]
    assert main(argv + ["--guide", str(pkl), "--guidance", "1.5"]) == 0
    prof = ef.Profile.load(out)
    assert np.all(prof.count == 32) and "guided" in prof.meta["model"]
    assert main(argv[:-1] + ["--no-labels", "--quiet"]) == 0


def test_cli_dataset_usage_errors(tmp_path, capsys):
    out = str(tmp_path / "o.npz")
    assert main(["profile", "--model", "tests_factory:gaussian", "--data", str(tmp_path / "none.zip"), "--out", out]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["profile", "--model", "tests_factory:gaussian", "--guide", "g.pkl", "--data", "digits",
                 "--out", out]) == 2
    assert "go with an EDM/EDM2 network pickle" in capsys.readouterr().err
    files, _, _ = image_set(shape=(3, 1, 1), labels=True)
    ds = write(files, tmp_path, True)
    assert main(["profile", "--model", "tests_factory:zero", "--data", str(ds), "--out", out]) == 2
    assert "--no-labels" in capsys.readouterr().err
    assert main(["profile", "--model", "tests_factory:zero", "--data", str(ds), "--no-labels", "--samples", "4",
                 "--grid", "0.1", "1", "3", "--out", out, "--quiet"]) == 0
    assert os.path.exists(out)


def test_a_corrupt_zip_member_or_a_vanished_file_is_a_clear_error(tmp_path):
    files, _, names = image_set()
    path = write(files, tmp_path, True)
    raw = bytearray(path.read_bytes())
    at = raw.find(files[names[2]][40:60])  # flip bytes inside the third image's data: its CRC no longer matches
    raw[at:at + 8] = bytes(8)
    path.write_bytes(bytes(raw))
    ds = data.Images(path)
    with pytest.raises(InputError, match=r"cannot read 00000/img00000002.png \(BadZipFile"):
        ds.rows([2])
    (tmp_path / "f").mkdir()
    folder = data.Images(write(files, tmp_path / "f", False))
    (tmp_path / "f" / names[1]).unlink()
    with pytest.raises(InputError, match="cannot read 00000/img00000001.png"):
        folder.rows([1])
    assert main(["profile", "--model", "tests_factory:zero", "--data", str(path), "--no-labels", "--samples", "64",
                 "--grid", "0.1", "1", "3", "--out", str(tmp_path / "o.npz"), "--quiet"]) == 2


def test_dataset_picks_the_reader_from_the_files(tmp_path):
    (tmp_path / "i").mkdir()
    (tmp_path / "l").mkdir()
    files, _, _ = image_set()
    assert isinstance(data.dataset(write(files, tmp_path / "i", True)), data.Images)
    path, _ = latent_set(tmp_path / "l")
    ds = data.dataset(path, labels=False)
    assert isinstance(ds, data.Latents) and ds.labels is None and len(ds) == 4
