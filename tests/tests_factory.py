"""A model factory for the CLI test (``--model tests_factory:gaussian``)."""
import entropic_fast as ef


def gaussian():
    return ef.analytic.Gaussian(1.0, (3,))


def slow_gaussian():
    """A Gaussian denoiser that sleeps a little per call and, on its first call, creates the file named by
    ``$EF_MARKER`` (so that a test knows the loop has started before it sends a signal)."""
    import os
    import time

    model = ef.analytic.Gaussian(1.0, (3,))

    def call(x, sigma):
        marker = os.environ.get("EF_MARKER")
        if marker and not os.path.exists(marker):
            open(marker, "w").close()
        time.sleep(0.01)
        return model(x, sigma)

    call.fingerprint = lambda: "slow gaussian 1.0 (3,)"
    return call


def text():
    return "not a model"


def needs_argument(scale):
    return ef.analytic.Gaussian(scale, (3,))


def explodes():
    def call(x, sigma):
        raise AssertionError("the network must not be called before the output is checked")
    return call


def zero():
    """``D = 0`` for any shape, taking no labels."""
    return lambda x, sigma: 0 * x
