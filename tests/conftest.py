"""Shared test setup.

The one place that picks matplotlib's backend for the tests: Agg (no display),
before any test module imports pyplot. Kernels that tests start (nbval, the
grader) keep their own inline backend: nothing here touches MPLBACKEND.
"""

import matplotlib

matplotlib.use("Agg")
