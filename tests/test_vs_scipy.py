"""Single-channel agreement with SciPy.

* ``fc2conv.correlate`` / ``fc2conv.convolve`` against ``scipy.signal.correlate`` /
  ``scipy.signal.convolve`` in modes ``valid``, ``full`` and ``same`` (odd kernels only for
  ``same``: SciPy centres an even kernel one step differently from the contract's "extra padding
  after"), 1-D and 2-D.
* ``padding="same"`` with every padding mode against ``scipy.ndimage.correlate`` /
  ``scipy.ndimage.convolve`` with the documented name mapping
  zeros -> constant (cval 0), reflect -> mirror, symmetric -> reflect, replicate -> nearest,
  circular -> wrap (odd kernels, stride 1; dilation through a zero-stuffed kernel).

SciPy runs in float64 on the values fc2conv sees; the tolerance is fc2conv's rounding bound
(see ``_strategies.compare``).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import scipy.signal
from _strategies import DTYPES, METHODS, PADDING_MODES, compare
from hypothesis import assume, given
from hypothesis import strategies as st

import fc2conv

NDIMAGE_MODE = {
    "zeros": "constant",
    "reflect": "mirror",
    "symmetric": "reflect",
    "replicate": "nearest",
    "circular": "wrap",
}


@st.composite
def single_channel(draw, ranks=(1, 2), odd=False, max_size=None):
    d = draw(st.sampled_from(ranks))
    max_n = max_size or {1: 16, 2: 8, 3: 5}[d]
    if odd:
        kernel = tuple(draw(st.sampled_from((1, 3, 5))) for _ in range(d))
    else:
        kernel = tuple(draw(st.integers(1, 5)) for _ in range(d))
    sizes = tuple(draw(st.integers(1, max_n)) for _ in range(d))
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal(sizes).astype(dtype)
    w = rng.standard_normal(kernel).astype(dtype)
    return x, w, dtype


@pytest.mark.parametrize("method", METHODS)
@given(
    data=single_channel(),
    mode=st.sampled_from(("valid", "full", "same")),
    flip=st.booleans(),
)
def test_single_channel_matches_scipy_signal(method, data, mode, flip) -> None:
    x, w, dtype = data
    if mode == "valid" and any(n < k for n, k in zip(x.shape, w.shape)):
        x, w = w, x  # scipy's valid mode also swaps; keep the kernel the smaller operand
        assume(all(n >= k for n, k in zip(x.shape, w.shape)))  # else no valid output
    if mode == "same":
        # odd kernels only; scipy centres even kernels one position differently
        w = w[tuple(slice(0, k - 1 + k % 2) for k in w.shape)]
    op = fc2conv.convolve if flip else fc2conv.correlate
    ref = scipy.signal.convolve if flip else scipy.signal.correlate
    y = op(x[None, None], w[None, None], padding=mode, method=method)[0, 0]
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    desired = ref(x64, w64, mode=mode, method="direct")
    bound = ref(np.abs(x64), np.abs(w64), mode=mode, method="direct")
    compare("scipy", y, desired, bound, w.size + 1, dtype,
            what=f"{op.__name__} {mode} {method}")


@pytest.mark.parametrize("mode", PADDING_MODES)
@given(
    data=single_channel(ranks=(1, 2, 3), odd=True),
    dilation=st.integers(1, 2),
    flip=st.booleans(),
    method=st.sampled_from(METHODS),
)
def test_same_padding_modes_match_scipy_ndimage(mode, data, dilation, flip, method) -> None:
    x, w, dtype = data
    op = fc2conv.convolve if flip else fc2conv.correlate
    ref = scipy.ndimage.convolve if flip else scipy.ndimage.correlate
    y = op(x[None, None], w[None, None], padding="same", padding_mode=mode,
           dilation=dilation, method=method)[0, 0]
    # a dilated kernel is the kernel with dilation - 1 zeros between taps (still odd-sized)
    wd = np.zeros(tuple(dilation * (k - 1) + 1 for k in w.shape))
    wd[tuple(slice(None, None, dilation) for _ in w.shape)] = w
    x64 = x.astype(np.float64)
    desired = ref(x64, wd, mode=NDIMAGE_MODE[mode], cval=0.0)
    bound = ref(np.abs(x64), np.abs(wd), mode=NDIMAGE_MODE[mode], cval=0.0)
    compare("scipy", y, desired, bound, w.size + 1, dtype,
            what=f"{op.__name__} same {mode} {method}")
