"""How a process running sweeps allocates memory: reuse what it freed, and touch the shared
address space (one lock for every thread's page faults) as rarely as possible.

A sweep allocates and frees arrays of a few MB to some 100 MB per partition, several partitions
at once, each in its own thread on Sail (whose own allocator maps and unmaps memory all the
while). Left at their defaults, the allocators turn that into kernel work:
- glibc serves such sizes with `mmap` and unmaps them at `free` (its threshold adapts only after
  the first frees), and pyarrow's mimalloc pool returns pages too: every partition of a
  process's first lookup page-faulted its memory in again (3.4 of 7 CPU-seconds on the bench);
- each new thread gets a glibc arena of its own, grown a page at a time with `mprotect`, so a
  lookup's fresh threads grew fresh arenas;
- numpy asks for transparent huge pages (`madvise`) on every array of 4 MB or more.
`mprotect`, `madvise` and `mmap` take the address space's lock for writing, and every page fault
of every thread waits for it: the same faults cost 2 µs each on a quiet process and 20 µs while
other threads do this.

No pyspark or numba import: Sail's engine calls this when it starts, before its threads run
Python, and a sweep calls it again (classic Spark's Python workers are processes of their own).
"""

from __future__ import annotations

import ctypes
import functools
import os

import pyarrow as pa

# glibc malloc (see mallopt(3)): requests below MMAP_THRESHOLD come from its heaps (the most it
# allows); up to TRIM_BYTES of freed heap memory is kept for the next request instead of going
# back to the OS; a heap grows by TOP_PAD beyond what a request needs, so growing is rare.
MMAP_THRESHOLD = 32 << 20
TRIM_BYTES = 256 << 20
TOP_PAD = 64 << 20
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -2, -3, -8  # <malloc.h>


@functools.cache
def reuse_freed_memory() -> None:
    """Set this process's allocators for sweeps (see the module docstring), once.

    - glibc: the thresholds above, and at most one arena per core this process may run on, so
      new threads share arenas that earlier ones already grew. Threads that already have an
      arena keep it, and glibc fixes its arena limit once more than 8 arenas exist: hence the
      call at Sail's start, before its threads run Python.
    - pyarrow allocates through glibc (the system pool), so its buffers are reused the same way.
    - numpy no longer asks for huge pages for its large arrays.
    Measured on the bench's lookup (230k impressions x 21 columns, 8 runs in one process, two
    processes each way, alternating): median 1.52-1.57 s before, 1.28-1.34 s after; the first
    run of a process 1.9-3.2 s before, 1.5-1.6 s after.
    Memory use: up to TRIM_BYTES (plus TOP_PAD) of freed memory stays reserved per arena.
    Without glibc (macOS, musl) only numpy's switch applies.
    (Two threads' first calls may both run it: the settings are the same.)
    """
    _numpy_without_huge_pages()
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return  # not glibc: keep the allocators as they are
    settings = ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_BYTES), (_M_TOP_PAD, TOP_PAD),
                (_M_ARENA_MAX, _cores()))
    if all(mallopt(option, value) == 1 for option, value in settings):
        pa.set_memory_pool(pa.system_memory_pool())


def _cores() -> int:
    """Cores this process may run on (a container's CPU set, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _numpy_without_huge_pages() -> None:
    """numpy's switch for `madvise(MADV_HUGEPAGE)` on large arrays (its NUMPY_MADVISE_HUGEPAGE)."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    switch = getattr(multiarray, "_set_madvise_hugepage", None)
    if switch is not None:
        switch(False)
