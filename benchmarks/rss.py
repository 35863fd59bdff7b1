"""Resident memory of this process on Linux, for the benchmarks: ``/proc/self/status`` fields and a
reset of the kernel's high-water mark (``VmHWM``) so that the peak of one call can be read."""

from __future__ import annotations

import ctypes
import gc
from pathlib import Path


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``, ``RssAnon``, ``RssFile``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak() -> tuple[int, bool]:
    """Resident KiB now (after a collection and returning free heap to the system), and whether
    the high-water mark could be reset to it."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    return status_kib("VmRSS"), reset
