"""k-diffusion-style schedule functions: descending torch sigma tensors with the zero appended."""
import torch

from ..schedules import schedule


def get_sigmas_entropic(n, profile, kind="rescaled", sigma_min=None, sigma_max=None, device="cpu", **options):
    """``n`` sigmas of the ``kind`` schedule of ``profile`` then 0, like k-diffusion's ``get_sigmas_karras``."""
    return torch.tensor(schedule(profile, n, kind, sigma_min, sigma_max, **options), dtype=torch.float32,
                        device=device)


def scheduler(profile, kind="rescaled", **options):
    """An A1111 / Forge scheduler function ``(n, sigma_min, sigma_max, device)`` bound to ``profile``.

    Register it as ``modules.sd_schedulers.Scheduler("entropic", "Entropic", scheduler(prof))``; the
    model's own ``sigma_min`` / ``sigma_max`` (float32) are accepted where they match the profiled grid."""
    def sigmas(n, sigma_min=None, sigma_max=None, device="cpu"):
        return get_sigmas_entropic(n, profile, kind, sigma_min, sigma_max, device=device, **options)

    sigmas.__name__ = sigmas.__qualname__ = f"entropic_{kind.replace('-', '_')}"
    return sigmas
