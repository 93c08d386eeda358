"""glibc malloc settings for a process whose requests allocate NumPy arrays of 0.1–30 MB.

By default glibc serves an allocation above its mmap threshold (128 KiB, raised dynamically up
to the largest block freed so far) with a fresh `mmap`, and gives the top of its heap back to
the kernel once more than twice that is free. A request that builds a few 400 KB score
vectors over 51k movies therefore maps, zero-fills and unmaps them every time: 366 minor page
faults per blended list, measured (0 with these settings), and 16 % of the recommender's
in-process time per list at 62k movies. Keeping blocks up to `MMAP_THRESHOLD` on the heap
and up to `TRIM_THRESHOLD` of free heap mapped makes those arrays reuse the same pages.
Source: mallopt(3), M_MMAP_THRESHOLD and M_TRIM_THRESHOLD.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's maximum (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit)
TRIM_THRESHOLD = 64 << 20  # free heap kept mapped: the most RSS this can add


def keep_freed_memory(
    mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD
) -> bool:
    """Fix glibc's mmap and trim thresholds (bytes) for this process; call before the big
    allocations start. True when both were set; False where the C library has no `mallopt`
    (musl, macOS) or refuses a value, and then nothing needs to change."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) & bool(
        mallopt(M_TRIM_THRESHOLD, trim_threshold)
    )
