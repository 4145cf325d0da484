"""Give freed memory back to the system after heavy work (glibc's ``malloc_trim``).

After the heavy endpoints (FullGrad on the deep models, landscapes, compare on five
depths) a server held 5.9 GB where it had 2.2 GB after preloading. Nothing of ours held
it: no cache keeps private copies (landscapes and sanity checks drop theirs), and the
tensors were freed. glibc's allocator keeps freed memory in its arenas, one per thread
that allocated, and raises its mmap threshold after large frees, so later large tensors
come from the arenas too and stay there. ``malloc_trim(0)`` returns every free page of
every arena: on a 2-core CPU, 3.9 GB fell to 2.3 GB (1.9 GB preloaded) in 0.5 s
(``benchmarks/memory.py``). The gate (``zoo.limits.Gate``) calls ``trim`` in a worker
thread when the last long run ends, so the bound is: the preloaded models plus what the
running requests use, plus a few hundred MB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018 - musl has none: no trimming there
    except (OSError, AttributeError):
        return None
    return libc


def trim() -> bool:
    """Return freed heap memory to the system; False where there is no glibc (macOS, Windows, musl)."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
