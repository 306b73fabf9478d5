"""The library's error types: every bad input raises a ValueError subclass."""


class InputError(ValueError):
    """A public function was given an invalid argument; the message names it and its value."""


class ProfileFormatError(InputError):
    """A profile file is damaged, of another format version, or not a profile at all."""


class Interrupted(KeyboardInterrupt):
    """A run stopped by SIGINT or SIGTERM after checkpointing; ``signum`` says which signal."""

    def __init__(self, signum, message=None):
        super().__init__(message or f"stopped by signal {signum}")
        self.signum = signum
