"""Datasets in the layout of EDM / EDM2's ``dataset_tool.py``, streamed (Karras et al. 2022, 2024).

- :class:`Images`: a folder or ``.zip`` of images (PNG, as ``dataset_tool.py`` writes them), rows
  scaled to [-1, 1] as EDM trains pixel models.
- :class:`Latents`: EDM2's latent datasets: per image an ``.npy`` of the VAE's raw mean and std,
  stacked as ``(2C, H, W)``; a row is ``(mean + std * noise) * scale + bias`` with a fresh noise
  draw, as EDM2 trains (``training/encoders.py``). The defaults ``EDM2_SCALE`` / ``EDM2_BIAS`` are
  EDM2's for the Stable Diffusion VAE: raw mean (5.81, 3.25, 0.12, -2.15), raw std (4.17, 4.62,
  3.71, 3.28), final std 0.5, so ``scale = 0.5 / raw_std`` and ``bias = -raw_mean * scale``.
- :class:`Encoded`: images encoded on the fly by a diffusers ``AutoencoderKL`` (:func:`encode`).

Labels come from ``dataset.json`` (``{"labels": [[name, class], ...]}``) and travel with their
rows: ``sample(n, generator)`` returns ``(rows, labels)`` for a labelled dataset read with
``labels=True`` (the default), else the rows alone. Only the files drawn are read. Each reader has
a ``fingerprint()`` for checkpoint identity: the file names and sizes, each file's modification time in
a folder (a file edited in place shows; it costs nothing, the listing stats every file anyway) or each
member's CRC-32 in a zip, ``dataset.json`` and the reader's parameters.
"""
import hashlib
import io
import json
import os
import threading
import zipfile

import numpy as np
import torch

from . import checks
from .errors import InputError

_RAW_MEAN, _RAW_STD, _FINAL_STD = (5.81, 3.25, 0.12, -2.15), (4.17, 4.62, 3.71, 3.28), 0.5
EDM2_SCALE = tuple(_FINAL_STD / s for s in _RAW_STD)
EDM2_BIAS = tuple(-m * _FINAL_STD / s for m, s in zip(_RAW_MEAN, _RAW_STD))
_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class _Archive:
    """The files of a folder or zip, by sorted relative name; reads are serialised (zip handles are not
    thread safe)."""

    def __init__(self, path, extensions):
        try:
            self.path = os.fspath(path)
        except TypeError:
            raise InputError(f"dataset must be a path, got {path!r}") from None
        self.lock = threading.Lock()
        self.zip = None
        if os.path.isdir(self.path):
            self.sizes, self.stamps = self._listing(self.path)  # stamps: modification times
        elif os.path.isfile(self.path) and zipfile.is_zipfile(self.path):
            try:
                self.zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError, ValueError) as e:  # a damaged central directory
                raise InputError(f"dataset {self.path!r} is a damaged zip archive ({e})") from None
            infos = [i for i in self.zip.infolist() if not i.is_dir()]
            self.sizes = {i.filename: i.file_size for i in infos}
            self.stamps = {i.filename: i.CRC for i in infos}  # stamps: CRC-32s
        elif os.path.exists(self.path):
            raise InputError(f"dataset {self.path!r} is neither a folder nor a zip archive")
        else:
            raise InputError(f"dataset {self.path!r}: no such file or folder")
        self.names = sorted(n for n in self.sizes if n.lower().endswith(extensions))
        if not self.names:
            raise InputError(f"dataset {self.path!r} holds no {'/'.join(extensions)} files")

    @staticmethod
    def _listing(path):
        """Sizes and modification times (ns) of a folder's files by relative name: one ``stat`` each, so a file
        edited in place changes the fingerprint at no extra cost (a zip's members carry CRC-32s instead)."""
        sizes, times = {}, {}
        for root, _, files in os.walk(path):
            for f in files:
                full = os.path.join(root, f)
                name = os.path.relpath(full, path).replace(os.sep, "/")
                try:
                    st = os.stat(full)
                except OSError as e:  # a dangling symbolic link, a file gone while listing
                    raise InputError(f"dataset {path!r}: cannot read {name} ({type(e).__name__}: {e})") from None
                sizes[name], times[name] = st.st_size, st.st_mtime_ns
        return sizes, times

    def read(self, name):
        try:
            with self.lock:
                if self.zip is not None:
                    return self.zip.read(name)
                with open(os.path.join(self.path, name), "rb") as f:
                    return f.read()
        except (zipfile.BadZipFile, OSError, EOFError) as e:  # a corrupt member, a file gone since listing
            raise InputError(f"{self.path}: cannot read {name} ({type(e).__name__}: {e})") from None

    def labels(self):
        """Labels per file from ``dataset.json`` (int64 (N,) or float32 (N, k)), or None."""
        if "dataset.json" not in self.sizes:
            return None
        try:
            table = json.loads(self.read("dataset.json")).get("labels")
        except (ValueError, AttributeError) as e:
            raise InputError(f"{self.path}/dataset.json is not an EDM dataset.json ({e})") from None
        if table is None:
            return None
        table = self._pairs(table)
        missing = [n for n in self.names if n not in table]
        if missing:
            raise InputError(f"{self.path}/dataset.json has no label for {missing[0]!r} "
                             f"({len(missing)} files unlabelled)")
        return self._label_array([table[n] for n in self.names])

    def _pairs(self, table):
        """``{name: label}`` from dataset.json's ``[[name, label], ...]``, every entry checked."""
        where = f"{self.path}/dataset.json"
        if not isinstance(table, list):
            raise InputError(f"{where}: 'labels' must be a list of [name, label] pairs, got {type(table).__name__}")
        for entry in table:
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
                raise InputError(f"{where}: each label entry must be [file name, label], got {entry!r}")
        return dict(table)

    def _label_array(self, values):
        """Integer classes (N,), or numeric vectors (N, k) of one length; anything else is refused by value."""
        where = f"{self.path}/dataset.json"
        values = [int(v) if isinstance(v, float) and v.is_integer() else v for v in values]  # 3.0 is class 3
        for v in values:
            ok = isinstance(v, int) and not isinstance(v, bool) if not isinstance(v, list) else \
                all(isinstance(u, (int, float)) and not isinstance(u, bool) for u in v)
            if not ok:
                raise InputError(f"{where}: a label must be an integer class or a list of numbers, got {v!r}")
        if all(isinstance(v, int) for v in values):
            return torch.tensor(values, dtype=torch.int64)
        if not all(isinstance(v, list) for v in values) or len({len(v) for v in values}) != 1:
            bad = next(v for v in values if not isinstance(v, list) or len(v) != len(values[0]))
            raise InputError(f"{where}: labels must be all integer classes or all vectors of one length, got {bad!r} "
                             f"beside {values[0]!r}")
        return torch.tensor(values, dtype=torch.float32)

    def fingerprint(self):
        h = hashlib.blake2b(digest_size=12)
        for n in self.names:
            h.update(f"{n}\x1f{self.sizes[n]}\x1f{self.stamps.get(n, '')}\x1e".encode())  # zip CRC or mtime
        if "dataset.json" in self.sizes:
            h.update(self.read("dataset.json"))
        return h.hexdigest()


class _Reader:
    """Shared by the readers: drawing rows with a generator, labels, fingerprint."""

    def __init__(self, path, extensions, labels):
        self.archive = path if isinstance(path, _Archive) else _Archive(path, extensions)
        self.use_labels = checks.flag(labels, "labels")
        self.labels = self.archive.labels() if self.use_labels else None
        self.stored_shape = tuple(self._decode(self.archive.names[0]).shape)

    def __len__(self):
        return len(self.archive.names)

    @property
    def shape(self):
        """The shape of a row (what ``sample`` returns per row)."""
        return self.stored_shape

    def __repr__(self):
        return f"{type(self).__name__}({self.archive.path!r}: {len(self)} x {self.shape})"

    def _decode(self, name):
        raise NotImplementedError

    def rows(self, index):
        """The stored arrays of files ``index`` (a sequence of ints), stacked, as float32."""
        out = []
        for i in np.asarray(index, dtype=np.int64).reshape(-1).tolist():
            name = self.archive.names[i]
            a = self._decode(name)
            if tuple(a.shape) != self.stored_shape:
                raise InputError(f"{self.archive.path}: {name} has shape {tuple(a.shape)}, the dataset's first file "
                                 f"{self.stored_shape}")
            out.append(a)
        if not out:
            return torch.zeros(0, *self.stored_shape)
        return torch.from_numpy(np.stack(out).astype(np.float32, copy=False))

    def _finish(self, raw, generator):
        return raw

    def sample(self, n, generator=None):
        """``n`` rows drawn uniformly with replacement, with their labels if the reader has them."""
        index = torch.randint(len(self), (checks.integer(n, "n", 0),), generator=generator)
        x = self._finish(self.rows(index), generator)
        return x if self.labels is None else (x, self.labels[index])

    def fingerprint(self):
        return f"{type(self).__name__} {self.archive.fingerprint()} {self._params()} labels={self.use_labels}"

    def _params(self):
        return ""


_TO_RGB = ("P", "CMYK", "YCbCr", "LAB", "HSV", "RGBX")  # converted as EDM's dataset_tool would see them: colour
_FULL = {"L": 255.0, "RGB": 255.0, "I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0}


def _pixels(img, where):
    """An image's pixels in [-1, 1], (H, W) or (H, W, 3): 8-bit grey and colour as ``x / 127.5 - 1``, 16-bit
    grey by its own full scale, 1-bit as black and white, palette and other colour modes converted to RGB;
    modes with alpha or of unknown scale (32-bit integer, float) refused by name."""
    mode = img.mode
    if mode == "1" or mode in _TO_RGB:
        img, mode = img.convert("L" if mode == "1" else "RGB"), "L" if mode == "1" else "RGB"
    if mode not in _FULL:
        raise InputError(f"{where} has image mode {mode!r}, which the reader does not take: 8- or 16-bit grey, "
                         "RGB, 1-bit or palette images (convert alpha and 32-bit images first)")
    return np.asarray(img).astype(np.float32) / (_FULL[mode] / 2) - 1  # 8-bit: x / 127.5 - 1, as before


class Images(_Reader):
    """Images of a ``dataset_tool.py`` folder or zip as ``(C, H, W)`` rows in [-1, 1] (``x / 127.5 - 1``)."""

    def __init__(self, path, labels=True):
        checks.optional("PIL", "data")
        super().__init__(path, _IMAGE_EXT, labels)

    def _decode(self, name):
        import PIL.Image

        try:
            img = PIL.Image.open(io.BytesIO(self.archive.read(name)))
            img.load()
        except Exception as e:  # noqa: BLE001  (PIL raises many kinds)
            raise InputError(f"{self.archive.path}: cannot decode {name} ({e})") from None
        a = _pixels(img, f"{self.archive.path}: {name}")
        return (a[:, :, None] if a.ndim == 2 else a).transpose(2, 0, 1)


class Latents(_Reader):
    """EDM2 latent dataset: ``.npy`` files of ``(2C, H, W)`` raw VAE mean and std; rows
    ``(mean + std * noise) * scale + bias`` per channel, the noise drawn from the sampling generator."""

    def __init__(self, path, scale=EDM2_SCALE, bias=EDM2_BIAS, labels=True):
        super().__init__(path, (".npy",), labels)
        if len(self.stored_shape) != 3 or self.stored_shape[0] % 2:
            raise InputError(f"{self.archive.path}: latent files must be (2C, H, W) mean and std, got "
                             f"{self.stored_shape}")
        c = self.stored_shape[0] // 2
        self.scale = checks.finite_array(np.broadcast_to(np.asarray(scale, dtype=np.float64), (c,)), "scale")
        self.bias = checks.finite_array(np.broadcast_to(np.asarray(bias, dtype=np.float64), (c,)), "bias")

    @property
    def shape(self):
        c, h, w = self.stored_shape
        return c // 2, h, w

    def _decode(self, name):
        try:
            a = np.load(io.BytesIO(self.archive.read(name)), allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:  # EOFError: an empty file
            raise InputError(f"{self.archive.path}: {name} is not a numeric .npy array ({type(e).__name__}: "
                             f"{e or 'empty'})") from None
        if a.dtype.kind not in "fiu":  # complex latents would lose their imaginary part
            raise InputError(f"{self.archive.path}: {name} holds {a.dtype} values; latents must be real numbers")
        return a

    def _finish(self, raw, generator):
        mean, std = raw.chunk(2, dim=1)
        x = mean + std * torch.randn(mean.shape, generator=generator)
        view = (1, -1, 1, 1)
        return x * torch.as_tensor(self.scale, dtype=torch.float32).view(view) \
            + torch.as_tensor(self.bias, dtype=torch.float32).view(view)

    def _params(self):
        return f"scale={self.scale.tolist()} bias={self.bias.tolist()}"


def dataset(path, labels=True):
    """The reader for a ``dataset_tool.py`` folder or zip: :class:`Latents` if it holds ``.npy`` files, else
    :class:`Images` (listed once)."""
    archive = _Archive(path, _IMAGE_EXT + (".npy",))
    latent = any(n.lower().endswith(".npy") for n in archive.names)
    archive.names = [n for n in archive.names if n.lower().endswith((".npy",) if latent else _IMAGE_EXT)]
    return Latents(archive, labels=labels) if latent else Images(archive, labels=labels)


@torch.no_grad()
def encode(vae, pixels, generator=None, scale=1.0, bias=0.0):
    """Latents ``(mean + std * noise) * scale + bias`` of ``pixels`` in [-1, 1] under a diffusers
    ``AutoencoderKL`` (Stable Diffusion's ``scale`` is ``vae.config.scaling_factor``, bias 0)."""
    p = next(_checked_vae(vae).parameters(), None)
    where = {} if p is None else dict(device=p.device, dtype=p.dtype)
    dist = getattr(vae.encode(pixels.to(**where)), "latent_dist", None)
    mean, std = getattr(dist, "mean", None), getattr(dist, "std", None)
    if not (torch.is_tensor(mean) and torch.is_tensor(std) and mean.shape == std.shape and len(mean) == len(pixels)):
        raise InputError(f"the VAE's encode() must return an output with a latent_dist holding mean and std tensors "
                         f"of one row per image (diffusers' AutoencoderKL), got {type(dist).__name__} of "
                         f"{type(mean).__name__} mean for {len(pixels)} images")
    mean, std = mean.float().cpu(), std.float().cpu()
    return (mean + std * torch.randn(mean.shape, generator=generator)) * scale + bias


def _checked_vae(vae):
    """``vae`` when it is a torch module with ``encode`` (diffusers' AutoencoderKL); else a clear error."""
    if not (isinstance(vae, torch.nn.Module) and callable(getattr(vae, "encode", None))):
        raise InputError(f"vae must be a torch module with encode(pixels) (diffusers' AutoencoderKL), got "
                         f"{type(vae).__name__}")
    return vae


class Encoded:
    """An image reader seen through a diffusers ``AutoencoderKL``: each drawn image is encoded on the fly
    (:func:`encode`), so a latent model profiles on the images it was trained from."""

    def __init__(self, images, vae, scale=None, bias=0.0, batch_size=16):
        self.images, self.vae = images, _checked_vae(vae)
        cfg = getattr(vae, "config", None)
        self.scale = checks.real(getattr(cfg, "scaling_factor", 1.0) if scale is None else scale, "scale")
        self.bias = checks.real(bias, "bias")
        self.batch_size = checks.integer(batch_size, "batch_size", 1)
        self.labels = getattr(images, "labels", None)

    def __len__(self):
        return len(self.images)

    def sample(self, n, generator=None):
        drawn = self.images.sample(n, generator=generator)
        x, lab = drawn if isinstance(drawn, tuple) else (drawn, None)
        z = torch.cat([encode(self.vae, part, generator, self.scale, self.bias)
                       for part in x.split(self.batch_size)]) if len(x) else x
        return z if lab is None else (z, lab)

    def fingerprint(self):
        from .fingerprint import fingerprint
        return f"Encoded {self.images.fingerprint()} vae={fingerprint(self.vae)[0]} scale={self.scale} bias={self.bias}"
