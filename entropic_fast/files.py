"""Files written whole or not at all: a temporary name in the target's folder, then a rename.

The file gets the mode an ordinary ``open(path, "w")`` would give it (an existing file keeps its
mode, a new one ``0o666`` less the umask), and a symbolic link is followed, not replaced. Signals
are held back for the length of the write (see ``signals``), so an interrupt never leaves a
temporary file or half a file behind.
"""
import os
import stat
import tempfile

import numpy as np

from .errors import InputError
from .signals import held


def _umask():
    """The process umask, read without changing it where /proc allows."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def target(path):
    """The file a write to ``path`` lands in: symbolic links resolved."""
    return os.path.realpath(os.fspath(path))


def check_writable(path, what="output"):
    """Raise InputError unless a file can be created at ``path`` (checked by creating and removing one)."""
    path = target(path)
    folder = os.path.dirname(path)
    if os.path.isdir(path):
        raise InputError(f"{what} {path} is a folder, not a file")
    if not os.path.isdir(folder):
        raise InputError(f"{what} {path}: the folder {folder} does not exist")
    try:
        with held():
            fd, tmp = tempfile.mkstemp(prefix=".entropic-fast-probe-", dir=folder)
            os.close(fd)
            os.unlink(tmp)
    except OSError as e:
        raise InputError(f"{what} {path} cannot be written: {e.strerror or e}") from None
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise InputError(f"{what} {path} exists and is not writable")
    return path


def write(path, fill):
    """Write a file atomically: ``fill(f)`` writes into a temporary binary file beside it, renamed over ``path``."""
    dest = target(path)
    folder = os.path.dirname(dest)
    with held():
        try:
            mode = stat.S_IMODE(os.stat(dest).st_mode)
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        fd, tmp = tempfile.mkstemp(prefix=".entropic-fast-", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                fill(f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, dest)
        except BaseException as e:
            if os.path.exists(tmp):
                os.unlink(tmp)
            stop = _interrupt_behind(e)
            if stop is not None:  # a writer's clean-up turned the interrupt into its own error (zipfile's
                raise stop from None  # ValueError): the caller sees the interrupt, as it was raised
            raise
    return os.fspath(path)


def _interrupt_behind(e):
    """The KeyboardInterrupt (or other non-Exception) that an Exception ``e`` was raised while handling, if any."""
    seen, ctx = set(), e.__context__ if isinstance(e, Exception) else None
    while ctx is not None and id(ctx) not in seen:
        if not isinstance(ctx, Exception):
            return ctx
        seen.add(id(ctx))
        ctx = ctx.__context__
    return None


def savez(path, **arrays):
    """Write ``arrays`` to an ``.npz`` file atomically (no pickles); returns the path given."""
    return write(path, lambda f: np.savez(f, **arrays))


def write_bytes(path, data):
    """Write ``data`` (bytes) atomically; returns the path given."""
    return write(path, lambda f: f.write(data))


def write_text(path, text):
    """Write ``text`` (UTF-8) atomically; returns the path given."""
    return write_bytes(path, text.encode())
