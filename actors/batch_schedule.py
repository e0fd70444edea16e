"""How many rows a member's next batch takes: small while its network is young.

A member answers every row of a batch with the network it had before the batch, then
learns the batch (test-then-train). Early on, and again after it answers a drift, its
network improves fast, so a 128-row batch scores its last rows with a network 128 rows
staler than it could be. Small batches keep the answers fresh but cost a read, a
conversion and a compiled call each, which only pays while the network is young.

So a batch is at most `GROWTH` times smaller than what the member has learned since it
started (or last answered a drift): it starts at `start` rows and doubles until it is
`full`. With the defaults (8 and 128) a member reads 8 batches of 8, 4 of 16, 4 of 32
and 4 of 64, and 128-row batches from its 512th row on; the throughput of a long stream
is unchanged, and on the accuracy harness every stream gains (docs/benchmarks.md,
"A batch that grows").
"""

from __future__ import annotations

__all__ = ["GROWTH", "batch_rows"]

GROWTH = 4  # rows learned per row of batch: a batch never answers with a network more
# than 1/4 of its training behind. Chosen over 8 by the harness: level on the long
# streams, better on Bananas (5,300 rows), and half the small batches' cost there.


def batch_rows(rows_learned: int, start: int | None, full: int) -> int:
    """Rows of the next batch after `rows_learned` rows (since the start or a drift answer).

    Args:
        rows_learned: rows the member learned since its network started over.
        start: rows of the first batches; None (or >= `full`) keeps every batch `full`.
        full: the batch size the schedule grows to (`batch_size`).

    Returns:
        `start`, doubled (the last step to `full` itself) while the bigger size times
        `GROWTH` is at most `rows_learned`.

    Example:
        >>> [batch_rows(n, 8, 128) for n in (0, 64, 128, 256, 511, 512, 1024, 10**6)]
        [8, 16, 32, 64, 64, 128, 128, 128]
        >>> batch_rows(10**6, 8, 100), batch_rows(0, None, 128), batch_rows(0, 256, 128)
        (100, 128, 128)
    """
    if start is None or start >= full:
        return full
    rows = max(1, start)
    while rows < full:
        bigger = min(rows * 2, full)
        if bigger * GROWTH > rows_learned:
            break
        rows = bigger
    return rows
