"""What an actor's process uses, for status and the report (memory leaks show here first)."""

from __future__ import annotations

import psutil


def memory_mb() -> dict[str, float]:
    """This process's memory in MiB: ``rss_mb`` (resident, all of it) and ``private_mb``.

    ``private_mb`` leaves out resident pages shared with other processes, chiefly Ray's
    object store, which is mapped into every worker: pages of it touched by `ray.put`
    count in RSS but belong to the store (bounded by its size). A leak is private memory.
    """
    info = psutil.Process().memory_info()
    shared = getattr(info, "shared", 0)  # Linux; elsewhere private is reported as RSS
    return {
        "rss_mb": round(info.rss / 2**20, 1),
        "private_mb": round((info.rss - shared) / 2**20, 1),
    }
