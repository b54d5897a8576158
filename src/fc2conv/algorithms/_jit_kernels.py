"""The loops of :mod:`fc2conv.algorithms.jit`, compiled by Numba (imported on first use).

Arrays have three spatial axes ``(D, H, W)``; ``g`` is the int64 ``(3, 3)`` array
``[stride, dilation, padding before]`` per axis; each kernel runs the planes ``lo:hi`` (and
where it takes them, the rows ``row_lo:row_hi``). Module-level functions, so that
``cache=True`` can keep their machine code on disk.
"""

from __future__ import annotations

import numba
import numpy as np

# 'contract' lets a multiply-add be one fused instruction; 'reassoc' lets the weight
# gradient's dot products run in vector lanes. No 'nnan'/'ninf': non-finite values keep their
# IEEE meaning.
_OPTIONS = {"nogil": True, "cache": True, "boundscheck": False}


# ---------------------------------------------------------------------------------------------
# blocks of rows on a flat grid (long vector loops)
#
# A block of R output rows (one output depth) is computed on a grid of rows ``Wp`` wide: the
# output width plus the kernel's reach, the columns past the output junk. The input rows the
# block reads are copied, zero-padded, into ``buf`` laid out on the same grid, so that the tap
# ``(a1, a2)`` of every output of the block is the one run ``buf[a1*d1*Wp + a2*d2 + t]``,
# ``t < L``: one loop of ``L = (R-1)*Wp + Wo`` per tap, instead of one of ``Wo`` per row.


@numba.njit(**_OPTIONS)
def _fill(buf, plane, r0, row0, rows, Wp, p1, p2):  # type: ignore[no-untyped-def]
    """``buf[u*Wp + v] = plane[r0, row0 + u - p1, v - p2]`` (0 outside ``plane``) for
    ``u < rows``, ``v < Wp``. (Loops, not slice assignments: Numba's slice assignment cost
    ~4x a copy here.)"""
    H, W = plane.shape[1], plane.shape[2]
    v0 = min(max(p2, 0), Wp)
    v1 = max(min(W + p2, Wp), v0)
    for u in range(rows):
        line = buf[u * Wp:(u + 1) * Wp]
        r1 = row0 + u - p1
        if r1 < 0 or r1 >= H:
            for v in range(Wp):
                line[v] = 0
            continue
        for v in range(v0):
            line[v] = 0
        inside = line[v0:v1]
        source = plane[r0, r1, v0 - p2:v1 - p2]
        for v in range(v1 - v0):
            inside[v] = source[v]
        for v in range(v1, Wp):
            line[v] = 0


@numba.njit(inline="always", cache=True)
def _tap(w3, flip, a0, a1, a2):  # type: ignore[no-untyped-def]
    """``w3[a0, a1, a2]``, or of the kernel flipped on every axis."""
    K0, K1, K2 = w3.shape
    return w3[K0 - 1 - a0, K1 - 1 - a1, K2 - 1 - a2] if flip else w3[a0, a1, a2]


@numba.njit(fastmath={"contract"}, **_OPTIONS)
def _taps(acc, buf, w3, flip, a0, L, Wp, d1, d2):  # type: ignore[no-untyped-def]
    """``acc[t] += sum_{a1, a2} w[a0, a1, a2] * buf[a1*d1*Wp + a2*d2 + t]`` for ``t < L``
    (``w`` flipped on every axis with ``flip``); three taps per pass over ``acc`` where the
    row has them (a third of the loads and stores of ``acc``)."""
    K1, K2 = w3.shape[1], w3.shape[2]
    out = acc[:L]
    for a1 in range(K1):
        a2 = 0
        while a2 < K2:
            take = min(3, K2 - a2)
            u0 = _tap(w3, flip, a0, a1, a2)
            u1 = _tap(w3, flip, a0, a1, min(a2 + 1, K2 - 1))
            u2 = _tap(w3, flip, a0, a1, min(a2 + 2, K2 - 1))
            start = a1 * d1 * Wp + a2 * d2
            if take == 3:
                i0 = buf[start:start + L]
                i1 = buf[start + d2:start + d2 + L]
                i2 = buf[start + 2 * d2:start + 2 * d2 + L]
                for t in range(L):
                    out[t] += u0 * i0[t] + u1 * i1[t] + u2 * i2[t]
            elif take == 2:
                i0 = buf[start:start + L]
                i1 = buf[start + d2:start + d2 + L]
                for t in range(L):
                    out[t] += u0 * i0[t] + u1 * i1[t]
            else:
                i0 = buf[start:start + L]
                for t in range(L):
                    out[t] += u0 * i0[t]
            a2 += take


@numba.njit(**_OPTIONS)
def _block_rows(Wp, reach, sums):  # type: ignore[no-untyped-def]
    """Output rows per block: the input rows' buffer and ``sums`` accumulators of the block
    together about 256 KiB of float32 (in the L2 cache; keep ``jit._BLOCK`` the same)."""
    return max(1, (65536 // Wp - reach) // (sums + 1))


@numba.njit(inline="always", cache=True)
def _in_phase(K1, K2, d1, d2, s1, s2, ph1, ph2):  # type: ignore[no-untyped-def]
    """Whether some tap ``(a1, a2)`` reads the phase ``(ph1, ph2)``: ``a*d % s == ph``."""
    for a1 in range(K1):
        for a2 in range(K2):
            if (a1 * d1) % s1 == ph1 and (a2 * d2) % s2 == ph2:
                return True
    return False


@numba.njit(**_OPTIONS)
def _zero(acc, L):  # type: ignore[no-untyped-def]
    """``acc[m, :L] = 0`` for every row ``m``."""
    for m in range(acc.shape[0]):
        line = acc[m]
        for t in range(L):
            line[t] = 0


@numba.njit(**_OPTIONS)
def _store(plane, part, rows, Wp, width, row0, row_step, col0, col_step):  # type: ignore[no-untyped-def]
    """``plane[row0 + r*row_step, col0 + j*col_step] = part[r*Wp + j]`` for ``r < rows``,
    ``j < width``: a block of the grid without its junk columns."""
    for r in range(rows):
        line = plane[row0 + r * row_step]
        block = part[r * Wp:r * Wp + width]
        for j in range(width):
            line[col0 + j * col_step] = block[j]


@numba.njit(fastmath={"contract"}, **_OPTIONS)
def flat_input_grad(gy, w, gx, og, g, lo, hi, row_lo, row_hi):  # type: ignore[no-untyped-def]
    """The input gradient of a stride-1 layer on the flat grid, for the planes ``(n, c)`` in
    ``lo:hi``, rows ``row_lo:row_hi`` of ``gx``: ``gx[n, c] = sum_{o of c} gy[n, o] *
    flip(w[o])``, a correlation with ``g[2]`` the padding of ``gy`` before (``d(K - 1) - p``;
    negative: cropped)."""
    C_in = gx.shape[1]
    K0, K1 = w.shape[2], w.shape[3]
    d0, d1, d2 = g[1, 0], g[1, 1], g[1, 2]
    p0, p1, p2 = g[2, 0], g[2, 1], g[2, 2]
    Do = gy.shape[2]
    D, H, W = gx.shape[2], gx.shape[3], gx.shape[4]
    Wp = W + d2 * (w.shape[4] - 1)
    reach = d1 * (K1 - 1)
    R = min(H, _block_rows(Wp, reach, 1))
    buf = np.empty((R + reach) * Wp, gy.dtype)
    acc = np.empty((1, R * Wp), gx.dtype)
    for plane in range(lo, hi):
        n, c = plane // C_in, plane % C_in
        for i0 in range(D):
            for row0 in range(row_lo, row_hi, R):
                rows = min(R, row_hi - row0)
                L = (rows - 1) * Wp + W
                _zero(acc, L)
                for a0 in range(K0):
                    r0 = i0 + a0 * d0 - p0
                    if r0 < 0 or r0 >= Do:
                        continue
                    for o in range(c * og, (c + 1) * og):
                        _fill(buf, gy[n, o], r0, row0, rows + reach, Wp, p1, p2)
                        _taps(acc[0], buf, w[o, 0], True, a0, L, Wp, d1, d2)
                _store(gx[n, c, i0], acc[0], rows, Wp, W, row0, 1, 0, 1)


@numba.njit(fastmath={"contract", "reassoc"}, **_OPTIONS)
def flat_weight_grad(gy, x, gw, og, g, lo, hi, row_lo, row_hi):  # type: ignore[no-untyped-def]
    """Adds into the float64 ``gw[o]`` for the ``og`` channels ``o`` of each input channel
    ``c`` in ``lo:hi``, from the rows ``row_lo:row_hi`` of ``gy``: per block, ``gy[n, o]``
    laid on the grid (zeros at the junk columns) dotted with the run of every tap of the
    block of ``x[n, c]`` (copied once for all ``o``; with a stride, one phase at a time, see
    :func:`flat_forward`); each dot product in the arrays' dtype, their sum in
    float64."""
    K0, K1, K2 = gw.shape[2], gw.shape[3], gw.shape[4]
    s0, s1, s2 = g[0, 0], g[0, 1], g[0, 2]
    d0, d1, d2 = g[1, 0], g[1, 1], g[1, 2]
    p0, p1, p2 = g[2, 0], g[2, 1], g[2, 2]
    D = x.shape[2]
    Do, Ho, Wo = gy.shape[2], gy.shape[3], gy.shape[4]
    Wp = Wo + (d2 * (K2 - 1)) // s2
    reach = (d1 * (K1 - 1)) // s1
    unit = s1 == 1 and s2 == 1
    R = min(Ho, _block_rows(Wp, reach, og))
    buf = np.empty((R + reach) * Wp, x.dtype)
    grids = np.zeros((og, R * Wp), gy.dtype)  # (the junk columns stay zero)
    for c in range(lo, hi):
        for n in range(gy.shape[0]):
            for i0 in range(Do):
                for row0 in range(row_lo, row_hi, R):
                    rows = min(R, row_hi - row0)
                    L = (rows - 1) * Wp + Wo
                    for m in range(og):
                        for r in range(rows):
                            line = grids[m, r * Wp:r * Wp + Wo]
                            source = gy[n, c * og + m, i0, row0 + r]
                            for j in range(Wo):
                                line[j] = source[j]
                    for a0 in range(K0):
                        r0 = i0 * s0 + a0 * d0 - p0
                        if r0 < 0 or r0 >= D:
                            continue
                        for ph1 in range(s1):
                            for ph2 in range(s2):
                                if not _in_phase(K1, K2, d1, d2, s1, s2, ph1, ph2):
                                    continue
                                if unit:
                                    _fill(buf, x[n, c], r0, row0, rows + reach, Wp, p1, p2)
                                else:
                                    _fill_phase(buf, x[n, c], r0, row0, rows + reach, Wp, s1,
                                                ph1 - p1, s2, ph2 - p2)
                                for m in range(og):
                                    left = grids[m, :L]
                                    acc = gw[c * og + m, 0]
                                    for a1 in range(K1):
                                        if (a1 * d1) % s1 != ph1:
                                            continue
                                        for a2 in range(K2):
                                            if (a2 * d2) % s2 != ph2:
                                                continue
                                            start = (a1 * d1) // s1 * Wp + (a2 * d2) // s2
                                            right = buf[start:start + L]
                                            total = left[0] * right[0]
                                            for t in range(1, L):
                                                total += left[t] * right[t]
                                            acc[a0, a1, a2] += total


# ---------------------------------------------------------------------------------------------
# strides: the flat grid per phase
#
# With stride s, tap a reads the input at (i + q)*s + ph - p, where a*d = q*s + ph: the taps of
# one phase ph (per axis) read the phase array x[ph - p :: s] at shifts q, i.e. a stride-1
# correlation. The forward and weight gradient gather one phase of the input at a time into
# the grid buffer (flat_forward, flat_weight_grad); the input gradient computes one phase of
# itself at a time (flat_strided_input_grad).


@numba.njit(**_OPTIONS)
def _fill_phase(buf, plane, r0, row0, rows, Wp, s1, o1, s2, o2):  # type: ignore[no-untyped-def]
    """``buf[u*Wp + v] = plane[r0, (row0 + u)*s1 + o1, v*s2 + o2]`` (0 outside ``plane``)
    for ``u < rows``, ``v < Wp``."""
    H, W = plane.shape[1], plane.shape[2]
    v0 = 0 if o2 >= 0 else (s2 - 1 - o2) // s2
    v1 = max(min(Wp, (W - o2 + s2 - 1) // s2), v0)
    v0 = min(v0, Wp)
    for u in range(rows):
        line = buf[u * Wp:(u + 1) * Wp]
        r1 = (row0 + u) * s1 + o1
        if r1 < 0 or r1 >= H:
            for v in range(Wp):
                line[v] = 0
            continue
        source = plane[r0, r1]
        for v in range(v0):
            line[v] = 0
        for v in range(v0, v1):
            line[v] = source[v * s2 + o2]
        for v in range(v1, Wp):
            line[v] = 0


@numba.njit(fastmath={"contract"}, **_OPTIONS)
def flat_forward(x, w, y, og, g, lo, hi, row_lo, row_hi):  # type: ignore[no-untyped-def]
    """The forward on the flat grid for the input-channel planes ``(n, c)`` in ``lo:hi``
    (``n * C_in + c``) and the rows ``row_lo:row_hi`` of ``y``: ``y[n, o] = x[n, c] * w[o]``
    for the ``og`` channels ``o`` of ``c``, each block of ``x`` copied once for all of them;
    with a stride, one phase at a time (taps one per pass), at stride 1 three taps per
    pass."""
    C_in = x.shape[1]
    K0, K1, K2 = w.shape[2], w.shape[3], w.shape[4]
    s0, s1, s2 = g[0, 0], g[0, 1], g[0, 2]
    d0, d1, d2 = g[1, 0], g[1, 1], g[1, 2]
    p0, p1, p2 = g[2, 0], g[2, 1], g[2, 2]
    D = x.shape[2]
    Do, Ho, Wo = y.shape[2], y.shape[3], y.shape[4]
    reach = (d1 * (K1 - 1)) // s1
    Wp = Wo + (d2 * (K2 - 1)) // s2
    unit = s1 == 1 and s2 == 1
    R = min(Ho, _block_rows(Wp, reach, og))
    buf = np.empty((R + reach) * Wp, x.dtype)
    acc = np.empty((og, R * Wp), y.dtype)
    for plane in range(lo, hi):
        n, c = plane // C_in, plane % C_in
        for i0 in range(Do):
            for row0 in range(row_lo, row_hi, R):
                rows = min(R, row_hi - row0)
                L = (rows - 1) * Wp + Wo
                _zero(acc, L)
                for a0 in range(K0):
                    r0 = i0 * s0 + a0 * d0 - p0
                    if r0 < 0 or r0 >= D:
                        continue
                    if unit:
                        _fill(buf, x[n, c], r0, row0, rows + reach, Wp, p1, p2)
                        for m in range(og):
                            _taps(acc[m], buf, w[c * og + m, 0], False, a0, L, Wp, d1, d2)
                        continue
                    for ph1 in range(s1):
                        for ph2 in range(s2):
                            if not _in_phase(K1, K2, d1, d2, s1, s2, ph1, ph2):
                                continue
                            _fill_phase(buf, x[n, c], r0, row0, rows + reach, Wp, s1, ph1 - p1,
                                        s2, ph2 - p2)
                            for a1 in range(K1):
                                if (a1 * d1) % s1 != ph1:
                                    continue
                                for a2 in range(K2):
                                    if (a2 * d2) % s2 != ph2:
                                        continue
                                    start = (a1 * d1) // s1 * Wp + (a2 * d2) // s2
                                    inp = buf[start:start + L]
                                    for m in range(og):
                                        v = w[c * og + m, 0, a0, a1, a2]
                                        out = acc[m, :L]
                                        for t in range(L):
                                            out[t] += v * inp[t]
                for m in range(og):
                    _store(y[n, c * og + m, i0], acc[m], rows, Wp, Wo, row0, 1, 0, 1)


@numba.njit(fastmath={"contract"}, **_OPTIONS)
def flat_strided_input_grad(gy, w, gx, og, g, lo, hi):  # type: ignore[no-untyped-def]
    """``gx[n, c]`` (zeroed) of a strided layer for the planes ``(n, c)`` in ``lo:hi``, one
    phase of ``gx`` at a time: with ``a*d = q*s + ph``, the inputs ``j = m*s + ph - p`` get
    ``sum_{a of phase ph} w[a] gy[m - q]``, a stride-1 correlation of ``grad_out`` (padded by
    ``q_max`` before) on the flat grid, written to every ``s``-th input."""
    C_in = gx.shape[1]
    K0, K1, K2 = w.shape[2], w.shape[3], w.shape[4]
    s0, s1, s2 = g[0, 0], g[0, 1], g[0, 2]
    d0, d1, d2 = g[1, 0], g[1, 1], g[1, 2]
    p0, p1, p2 = g[2, 0], g[2, 1], g[2, 2]
    D, H, W = gx.shape[2], gx.shape[3], gx.shape[4]
    Do = gy.shape[2]
    q1max, q2max = (d1 * (K1 - 1)) // s1, (d2 * (K2 - 1)) // s2
    Wm = (W - 1 + p2) // s2 + 1  # (the widest phase)
    Wp = Wm + q2max
    R = _block_rows(Wp, q1max, 1)
    buf = np.empty((R + q1max) * Wp, gy.dtype)
    acc = np.empty((1, R * Wp), gx.dtype)
    for plane in range(lo, hi):
        n, c = plane // C_in, plane % C_in
        for r0 in range(D):
            for ph1 in range(s1):
                for ph2 in range(s2):
                    if not _in_phase(K1, K2, d1, d2, s1, s2, ph1, ph2):
                        continue
                    m1_lo, m1_hi = -((ph1 - p1) // s1), (H - 1 - ph1 + p1) // s1 + 1
                    m2_lo, m2_hi = -((ph2 - p2) // s2), (W - 1 - ph2 + p2) // s2 + 1
                    width = m2_hi - m2_lo
                    if m1_hi <= m1_lo or width <= 0:
                        continue
                    for mb in range(m1_lo, m1_hi, R):
                        rows = min(R, m1_hi - mb)
                        L = (rows - 1) * Wp + width
                        _zero(acc, L)
                        for a0 in range(K0):
                            e0 = r0 + p0 - a0 * d0
                            if e0 % s0 != 0 or e0 < 0 or e0 // s0 >= Do:
                                continue
                            i0 = e0 // s0
                            for o in range(c * og, (c + 1) * og):
                                _fill(buf, gy[n, o], i0, mb, rows + q1max, Wp, q1max,
                                      q2max - m2_lo)
                                for a1 in range(K1):
                                    if (a1 * d1) % s1 != ph1:
                                        continue
                                    for a2 in range(K2):
                                        if (a2 * d2) % s2 != ph2:
                                            continue
                                        v = w[o, 0, a0, a1, a2]
                                        start = ((q1max - (a1 * d1) // s1) * Wp
                                                 + q2max - (a2 * d2) // s2)
                                        inp = buf[start:start + L]
                                        out = acc[0, :L]
                                        for t in range(L):
                                            out[t] += v * inp[t]
                        # (the phase's inputs: every s-th row and column from here)
                        _store(gx[n, c, r0], acc[0], rows, Wp, width, mb * s1 + ph1 - p1, s1,
                               m2_lo * s2 + ph2 - p2, s2)
