"""k-diffusion-style schedule functions: descending torch sigma tensors with the zero appended."""
import torch

from ..schedules import schedule


def get_sigmas_entropic(n, profile, kind="rescaled", sigma_min=None, sigma_max=None, device="cpu", **options):
    """``n`` sigmas of the ``kind`` schedule of ``profile`` then 0, like k-diffusion's ``get_sigmas_karras``."""
    return torch.tensor(schedule(profile, n, kind, sigma_min, sigma_max, **options), dtype=torch.float32,
                        device=device)
