"""Peak memory of this process, for the efficiency table (Table IV): one definition for every step."""

from __future__ import annotations

import resource
import sys


def peak_rss_mb() -> float:
    """The process's resident-memory high-water mark in MiB (ru_maxrss: KiB on Linux, bytes on macOS). In a step
    forked from Dagster's preloaded server it includes the preloaded libraries' pages the step touched."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10
