"""SIGINT and SIGTERM held back to safe points, so that an interrupt never splits a commit.

``deferring()`` wraps a long loop: the first SIGINT or SIGTERM is only recorded, and the loop
raises it as :class:`Interrupted` at its next ``poll()`` (a unit boundary), after which the
caller writes its checkpoint. A second signal while the loop is outside a critical section
raises at once (Ctrl-C twice for a denoiser that hangs). ``held()`` marks a critical section
(a commit, a file write): every signal that lands inside waits until it ends. Handlers are
installed only while one of these is active and only from the main thread (Python delivers
signals there); elsewhere both are no-ops. SIGTERM, whose default is to kill the process, is
raised as ``Interrupted(SIGTERM)`` so that SLURM, Kubernetes and torchrun stops checkpoint too. A signal the
process ignores (a background job of a non-interactive shell starts with SIGINT ignored) stays ignored.
"""
import contextlib
import signal
import threading

from .errors import Interrupted

SIGNALS = tuple(s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None)) if s is not None)


class _State:
    depth = 0          # nesting of held()
    defer = 0          # nesting of deferring()
    pending = []       # signals waiting for a safe point
    previous = None    # handlers to restore, while ours are installed


def _main_thread():
    return threading.current_thread() is threading.main_thread()


def _handler(signum, frame):
    if _State.defer > 0 and _State.depth == 0 and _State.pending:  # a second signal in the loop: stop now
        _State.pending.clear()
        raise Interrupted(signum)
    _State.pending.append(signum)  # delivered at the next poll() or at the end of the outermost section


def _flush():
    """A Python-level call: the interpreter runs the handlers of signals already caught here."""


def _set_all(handlers):
    """``signal.signal`` for every one of ``handlers``, all of them even when a Python handler runs in between and
    raises (another thread, where the signals are not blocked, caught one): that error is raised after the last."""
    todo, error = list(handlers.items()), None
    while todo:
        try:
            while todo:
                s, h = todo[0]
                signal.signal(s, h if h is not None else signal.SIG_DFL)
                todo.pop(0)
        except BaseException as e:  # noqa: BLE001 (whatever a handler raised: finish the swap first)
            error = error or e
    if error is not None:
        raise error


def _swap(handlers):
    """Install ``handlers`` with SIGINT/SIGTERM blocked at the OS level in this thread: a signal caught before the
    block runs the outgoing handler at ``_flush``; one arriving during the swap reaches the new one, or, caught by
    another thread, runs whichever handler is in place at the next check, the swap completing all the same."""
    mask = getattr(signal, "pthread_sigmask", None)
    old = mask(signal.SIG_BLOCK, SIGNALS) if mask else None
    try:
        _flush()
        _set_all(handlers)
    finally:
        if mask:
            mask(signal.SIG_SETMASK, old)


def _install():
    if _State.previous is None:
        previous = {s: signal.getsignal(s) for s in SIGNALS}
        _State.previous = previous  # first: whatever happens during the swap, _restore can put these back
        _swap({s: _handler for s, h in previous.items() if h is not signal.SIG_IGN})  # ignored stays ignored


def _restore():
    """Put the previous handlers back and deliver what is still pending to them."""
    previous = _State.previous
    if previous is None:
        return
    try:
        _swap(previous)
    finally:
        _State.previous = None
    pending, _State.pending = _State.pending, []
    for s in pending[:1]:
        h = previous.get(s)
        if h is signal.SIG_IGN:
            continue
        if h in (signal.default_int_handler, signal.SIG_DFL, None):
            raise Interrupted(s)
        h(s, None)


def _leave(propagating):
    if _State.depth == 0 and _State.defer == 0:
        if propagating:
            _State.pending.clear()
        _restore()


@contextlib.contextmanager
def _section(counter):
    """Install the handlers, then count this section in ``_State.<counter>`` while it runs."""
    if not _main_thread():
        yield
        return
    try:
        _install()  # first: from here on a signal is held while the counter is > 0
    except BaseException:  # a handler of the caller's ran during the swap and raised: theirs go back
        if _State.depth == 0 and _State.defer == 0:
            _State.pending.clear()
            _restore()
        raise
    setattr(_State, counter, getattr(_State, counter) + 1)
    ok = False
    try:
        yield
        ok = True
    finally:
        setattr(_State, counter, getattr(_State, counter) - 1)
        _leave(propagating=not ok)


def held():
    """A critical section: signals that arrive inside wait until it ends."""
    return _section("depth")


def deferring():
    """A loop that polls: the first signal is raised at the next :func:`poll`, a second one at once."""
    return _section("defer")


def poll():
    """Raise the first pending signal as :class:`Interrupted` (call at a safe point, outside ``held``)."""
    if _State.pending and _State.depth == 0:
        signum = _State.pending[0]
        _State.pending.clear()
        raise Interrupted(signum)


def exit_code(signum):
    """The shell's exit status for a process stopped by ``signum`` (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(signum)
