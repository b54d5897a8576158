"""The loops of :mod:`fc2conv.algorithms.jit`, compiled by Numba (imported on first use).

Arrays have three spatial axes ``(D, H, W)``; ``g`` is the int64 ``(3, 3)`` array
``[stride, dilation, padding before]`` per axis; each kernel runs the planes ``lo:hi``.
Module-level functions, so that ``cache=True`` can keep their machine code on disk.
"""

from __future__ import annotations

import numba

# 'contract' lets a multiply-add be one fused instruction; 'reassoc' lets the weight
# gradient's dot products run in vector lanes. No 'nnan'/'ninf': non-finite values keep their
# IEEE meaning.
_OPTIONS = {"nogil": True, "cache": True, "boundscheck": False}


@numba.njit(inline="always", cache=True)
def _span(out, size, stride, shift):  # type: ignore[no-untyped-def]
    """The outputs ``j`` in ``lo:hi`` whose tap ``j*stride + shift`` lies in ``0:size``."""
    lo = 0 if shift >= 0 else (stride - 1 - shift) // stride
    hi = min(out, (size - shift + stride - 1) // stride)
    return lo, hi


@numba.njit(fastmath={"contract"}, nogil=True, cache=True, boundscheck=False)
def _axpy(out, v, inp):  # type: ignore[no-untyped-def]
    """``out += v * inp`` on two 1-D runs of the same length."""
    for j in range(out.shape[0]):
        out[j] += v * inp[j]


@numba.njit(fastmath={"contract"}, **_OPTIONS)
def forward(x, w, y, og, g, lo, hi):  # type: ignore[no-untyped-def]
    """``y[n, o]`` for the planes ``(n, o)`` in ``lo:hi`` (``n * C_out + o``)."""
    C_out = y.shape[1]
    D, H, W = x.shape[2], x.shape[3], x.shape[4]
    K0, K1, K2 = w.shape[2], w.shape[3], w.shape[4]
    s2, d2, p2 = g[0, 2], g[1, 2], g[2, 2]
    for plane in range(lo, hi):
        n, o = plane // C_out, plane % C_out
        c = o // og
        for i0 in range(y.shape[2]):
            for i1 in range(y.shape[3]):
                row = y[n, o, i0, i1]
                row[:] = 0
                for a0 in range(K0):
                    r0 = i0 * g[0, 0] + a0 * g[1, 0] - g[2, 0]
                    if r0 < 0 or r0 >= D:
                        continue
                    for a1 in range(K1):
                        r1 = i1 * g[0, 1] + a1 * g[1, 1] - g[2, 1]
                        if r1 < 0 or r1 >= H:
                            continue
                        src = x[n, c, r0, r1]
                        for a2 in range(K2):
                            shift = a2 * d2 - p2
                            j0, j1 = _span(row.shape[0], W, s2, shift)
                            if j1 <= j0:
                                continue
                            v = w[o, 0, a0, a1, a2]
                            if s2 == 1:
                                # (slices: loops from 0 have provably non-negative indices,
                                # which lets the compiler vectorise them)
                                _axpy(row[j0:j1], v, src[j0 + shift:j1 + shift])
                            else:
                                for j in range(j0, j1):
                                    row[j] += v * src[j * s2 + shift]


@numba.njit(fastmath={"contract"}, **_OPTIONS)
def input_grad(gy, w, gx, og, g, lo, hi):  # type: ignore[no-untyped-def]
    """Adds into ``gx[n, c]`` (zeroed) for the planes ``(n, c)`` in ``lo:hi``."""
    C_in = gx.shape[1]
    D, H, W = gx.shape[2], gx.shape[3], gx.shape[4]
    K0, K1, K2 = w.shape[2], w.shape[3], w.shape[4]
    s2, d2, p2 = g[0, 2], g[1, 2], g[2, 2]
    for plane in range(lo, hi):
        n, c = plane // C_in, plane % C_in
        for o in range(c * og, (c + 1) * og):
            for i0 in range(gy.shape[2]):
                for i1 in range(gy.shape[3]):
                    row = gy[n, o, i0, i1]
                    for a0 in range(K0):
                        r0 = i0 * g[0, 0] + a0 * g[1, 0] - g[2, 0]
                        if r0 < 0 or r0 >= D:
                            continue
                        for a1 in range(K1):
                            r1 = i1 * g[0, 1] + a1 * g[1, 1] - g[2, 1]
                            if r1 < 0 or r1 >= H:
                                continue
                            dst = gx[n, c, r0, r1]
                            for a2 in range(K2):
                                shift = a2 * d2 - p2
                                j0, j1 = _span(row.shape[0], W, s2, shift)
                                if j1 <= j0:
                                    continue
                                v = w[o, 0, a0, a1, a2]
                                if s2 == 1:
                                    _axpy(dst[j0 + shift:j1 + shift], v, row[j0:j1])
                                else:
                                    for j in range(j0, j1):
                                        dst[j * s2 + shift] += v * row[j]


@numba.njit(fastmath={"contract", "reassoc"}, **_OPTIONS)
def weight_grad(gy, x, gw, og, g, lo, hi):  # type: ignore[no-untyped-def]
    """Adds into the float64 ``gw[o]`` (zeroed) for the output channels ``o`` in ``lo:hi``:
    each row's dot product in the arrays' dtype, the rows in float64."""
    D, H, W = x.shape[2], x.shape[3], x.shape[4]
    K0, K1, K2 = gw.shape[2], gw.shape[3], gw.shape[4]
    s2, d2, p2 = g[0, 2], g[1, 2], g[2, 2]
    for o in range(lo, hi):
        c = o // og
        acc = gw[o, 0]
        for n in range(gy.shape[0]):
            for i0 in range(gy.shape[2]):
                for i1 in range(gy.shape[3]):
                    row = gy[n, o, i0, i1]
                    for a0 in range(K0):
                        r0 = i0 * g[0, 0] + a0 * g[1, 0] - g[2, 0]
                        if r0 < 0 or r0 >= D:
                            continue
                        for a1 in range(K1):
                            r1 = i1 * g[0, 1] + a1 * g[1, 1] - g[2, 1]
                            if r1 < 0 or r1 >= H:
                                continue
                            src = x[n, c, r0, r1]
                            for a2 in range(K2):
                                shift = a2 * d2 - p2
                                j0, j1 = _span(row.shape[0], W, s2, shift)
                                if j1 <= j0:
                                    continue
                                # (started from the first product: a typed zero of the
                                # arrays' dtype, and a NaN or inf stays one)
                                if s2 == 1:
                                    left = row[j0:j1]
                                    right = src[j0 + shift:j1 + shift]
                                    total = left[0] * right[0]
                                    for j in range(1, j1 - j0):
                                        total += left[j] * right[j]
                                else:
                                    total = row[j0] * src[j0 * s2 + shift]
                                    for j in range(j0 + 1, j1):
                                        total += row[j] * src[j * s2 + shift]
                                acc[a0, a1, a2] += total
