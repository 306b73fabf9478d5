"""Build the pybind11 extensions entropic_fast._curves, _noise, _stats and _ideal (metadata lives in pyproject.toml)."""
from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

setup(
    ext_modules=[Pybind11Extension("entropic_fast._curves", ["csrc/curves.cpp"], cxx_std=17, depends=["csrc/cephes.h"],
                                   extra_compile_args=["-O3", "-ffp-contract=off"]),
                 Pybind11Extension("entropic_fast._noise", ["csrc/noise.cpp"], cxx_std=17,
                                   extra_compile_args=["-O3", "-ffp-contract=off", "-fno-math-errno",
                                                       "-fno-trapping-math"]),
                 Pybind11Extension("entropic_fast._stats", ["csrc/stats.cpp"], cxx_std=17,
                                   extra_compile_args=["-O3", "-ffp-contract=off"]),
                 Pybind11Extension("entropic_fast._ideal", ["csrc/ideal.cpp"], cxx_std=17, depends=["csrc/cephes.h"],
                                   extra_compile_args=["-O3", "-ffp-contract=off"])],
    cmdclass={"build_ext": build_ext},
)
