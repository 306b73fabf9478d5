"""A model factory for the CLI test (``--model tests_factory:gaussian``)."""
import entropic_fast as ef


def gaussian():
    return ef.analytic.Gaussian(1.0, (3,))
