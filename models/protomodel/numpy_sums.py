"""numpy's float summation order in compiled (numba) kernels.

Kernels that replace numpy passes must give the same doubles. ``ndarray.sum`` over a contiguous
float64 axis is not a left-to-right loop: numpy's ``pairwise_sum`` keeps 8 partial sums within a
block of 128 elements (and recurses on halves above that). :func:`pairwise_sum` reproduces it for
the short rows our kernels sum (slots, decay units: at most a few dozen elements).
"""

from __future__ import annotations

import numba


@numba.njit(cache=True, inline="always")
def pairwise_sum(a) -> float:
    """Σ a (1-d, n ≤ 128) in numpy's summation order, equal to ``a.sum()`` to the bit."""
    n = a.shape[0]
    if n > 128:
        raise ValueError("pairwise_sum: more than 128 elements (numpy recurses there)")
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[i]
        return res
    r0, r1, r2, r3, r4, r5, r6, r7 = a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]
    i = 8
    while i < n - n % 8:
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[i]
        i += 1
    return res
