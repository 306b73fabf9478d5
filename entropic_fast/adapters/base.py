"""What every adapter is: an ``nn.Module`` around the wrapped network, so ``profile`` sees its dtype and
device, ``.to()`` moves it, and checkpoints fingerprint it with the adapter's own settings."""
import torch


class Adapter(torch.nn.Module):
    """Base of the adapters: ``net`` is the wrapped network (a module, or any callable)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def _first_parameter(self):
        return next((p for p in self.parameters() if p.is_floating_point()), None)

    @property
    def dtype(self):
        """The wrapped network's floating dtype (None for a network without parameters)."""
        p = self._first_parameter()
        return None if p is None else p.dtype

    @property
    def device(self):
        """The wrapped network's device (None for a network without parameters)."""
        p = self._first_parameter()
        return None if p is None else p.device

    def settings(self):
        """What, besides the networks, determines the output (hashed into the fingerprint)."""
        return {}

    def fingerprint(self):
        from ..fingerprint import fingerprint
        return fingerprint((type(self).__qualname__, self.net, self.settings()))[0]
