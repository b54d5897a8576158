"""Collection rules shared by the tests and the doctests of ``src/fc2conv``.

``fc2conv.scale`` needs the ``scale`` extra (Dask, Zarr); without it its modules cannot be
imported, so their doctests are not collected (tests/test_scale*.py skip themselves). Nor
are those of ``fc2conv.algorithms._jit_kernels`` without Numba (the ``jit`` extra).
"""

import importlib.util

collect_ignore_glob = [] if importlib.util.find_spec("dask") else ["src/fc2conv/scale/*"]
if not importlib.util.find_spec("numba"):
    collect_ignore_glob.append("src/fc2conv/algorithms/_jit_kernels.py")
