"""Giving freed heap memory back to the operating system: glibc's malloc_trim and mallopt.

After a burst (a thousand streams replaying at once) the memory Python frees stays in
glibc's heaps, scattered between live blocks, so the heap cannot shrink from its top and
RSS stays at the peak. `malloc_trim(0)` hands every free page back (madvise), in every
arena. Elsewhere (musl, macOS) these are no-ops. And before that, a cancelled stream's task,
frames and exception reference each other: only the cyclic collector frees them.
"""

from __future__ import annotations

import ctypes
import gc
import sys

M_ARENA_MAX = -8  # glibc's mallopt parameter number


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


_LIBC = _libc()
_TRIM = getattr(_LIBC, "malloc_trim", None)
_MALLOPT = getattr(_LIBC, "mallopt", None)


def trim() -> bool:
    """Return the heap's free pages to the operating system; False where unsupported."""
    if _TRIM is None:
        return False
    return bool(_TRIM(0))


def limit_arenas(count: int) -> bool:
    """Cap glibc's malloc arenas (one per thread, up to 8 per core, by default)."""
    if _MALLOPT is None:
        return False
    return bool(_MALLOPT(M_ARENA_MAX, count))


def release() -> None:
    """Free unreachable cycles now, then give the free heap pages back."""
    gc.collect()
    trim()
