import os
import sys

# Triton kernels run in its CPU interpreter in the tests (set before anything imports triton).
os.environ.setdefault("TRITON_INTERPRET", "1")
sys.path.insert(0, os.path.dirname(__file__))
