"""Giving freed heap memory back to the operating system (glibc's malloc_trim).

After a burst (a thousand streams replaying at once) two things keep RSS at its peak. A
cancelled stream's task, frames and exception reference each other, so only the cyclic
collector frees them, and it may not run a full pass for a long time. And what is freed
stays in glibc's heaps, scattered between live blocks, so a heap cannot shrink from its
top; `malloc_trim(0)` hands every free page back (madvise), in every arena. Elsewhere
(musl, macOS) the trim is a no-op.
"""

from __future__ import annotations

import ctypes
import gc
import sys


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


_LIBC = _libc()
_TRIM = getattr(_LIBC, "malloc_trim", None)


def trim() -> bool:
    """Return the heap's free pages to the operating system; False where unsupported."""
    if _TRIM is None:
        return False
    return bool(_TRIM(0))


def release() -> None:
    """Free unreachable cycles now, then give the free heap pages back."""
    gc.collect()
    trim()
