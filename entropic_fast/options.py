"""Option groups: the settings a run takes, as small frozen records checked once where they are made.

``ef.profile`` (and ``ef.compare``) keep their keyword arguments; they build these groups and pass them unchanged
to the run, so an option is added in its group and read where it is used, not copied through three signatures.

- :class:`Checkpointing`: where a run saves and resumes, and how often.
- :class:`Throughput`: how the network is fed (batch size, device, kernels' backend, ``torch.compile``,
  channels-last), none of which changes the result.
"""
import dataclasses
from typing import Any, Optional

from . import checks, files


@dataclasses.dataclass(frozen=True)
class Checkpointing:
    """Save to ``path`` (None: no checkpoint) every ``every`` finished work units or ``seconds`` seconds."""
    path: Optional[str] = None
    every: int = 256
    seconds: float = 600.0

    def __post_init__(self):
        if self.path is not None:
            object.__setattr__(self, "path", checks.path(self.path, "checkpoint"))
        object.__setattr__(self, "every", checks.integer(self.every, "checkpoint_every", 1))
        object.__setattr__(self, "seconds", checks.real(self.seconds, "checkpoint_seconds", positive=True,
                                                        finite=False))

    def for_process(self, dist=None):
        """The group with this process's file (``PATH.rank<r>-of-<w>`` under torch.distributed, ``dist`` being
        ``(rank, world)``), checked writable before any work."""
        if self.path is None:
            return self
        path = self.path if dist is None else f"{self.path}.rank{dist[0]}-of-{dist[1]}"
        files.check_writable(path, "checkpoint")
        return dataclasses.replace(self, path=path)


@dataclasses.dataclass(frozen=True)
class Throughput:
    """How the network is fed: ``batch_size`` rows per call, on ``device`` (None: the denoiser's), the kernels of
    ``backend``, through ``torch.compile`` and in channels-last memory format on request. The result does not
    depend on any of them."""
    batch_size: int = 256
    device: Any = None
    backend: str = "auto"
    compile: bool = False
    channels_last: bool = False

    def __post_init__(self):
        """The device and the backend are checked where they are resolved (``estimate.pick_device``,
        ``kernels.launchers``), once."""
        object.__setattr__(self, "batch_size", checks.integer(self.batch_size, "batch_size", 1))
        object.__setattr__(self, "compile", checks.flag(self.compile, "compile"))
        object.__setattr__(self, "channels_last", checks.flag(self.channels_last, "channels_last"))
