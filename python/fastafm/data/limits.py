"""The limit on feature pairs per row: AFM's attention costs O(pairs) per row, m(m-1)/2 for m non-zeros.

Memory is linear in m (long rows are streamed through tiles), but time is not: a libFM line of 300,000 repeated
ids is 4.5e10 pairs, hours of work from 2 MB of text. So rows of more than `max_pairs_per_row()` pairs are
refused by every call that runs the attention kernels (fit, partial_fit, predict, decision_function,
predict_proba, attention_weights, eval sets, the CLI) with one line naming the row and the limit. FM, and
AFM with attention=False, pool in O(m k) and are not limited.

The default, 2**25 = 33,554,432 pairs (rows of up to 8,192 non-zeros), is chosen from the measured cost in
docs/reliability.md ("Long rows"): at k = t = 64 a streamed row predicts at about 1.4e7 pairs/s and trains at
about 3.6e6 pairs/s on one core, so a row at the limit takes about 2.5 s to predict and 10 s per training epoch
— far beyond any field-structured data (Criteo's 39 fields: 741 pairs), and bounded. Raise or lower it with
`set_max_pairs_per_row(n)` (process-wide; None restores the default), the environment variable
FASTAFM_MAX_PAIRS_PER_ROW, or `--max-pairs-per-row N` on the command line.
"""
from __future__ import annotations

import numbers
import os
from typing import Optional

import numpy as np

DEFAULT_MAX_PAIRS_PER_ROW = 2**25
ENV = "FASTAFM_MAX_PAIRS_PER_ROW"
_override: Optional[int] = None


class RowTooLongError(ValueError):
    """A row with more feature pairs than max_pairs_per_row() (a ValueError)."""


def _parse(value, where: str) -> int:
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise ValueError(f"{where} must be an integer >= 1, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{where} must be an integer >= 1, got {value!r}")
    return int(value)


def max_pairs_per_row() -> int:
    """The limit in force: set_max_pairs_per_row's, else FASTAFM_MAX_PAIRS_PER_ROW's, else the default."""
    if _override is not None:
        return _override
    text = os.environ.get(ENV)
    return DEFAULT_MAX_PAIRS_PER_ROW if text is None else _parse(text.strip(), ENV)


def set_max_pairs_per_row(n: Optional[int]) -> None:
    """Set the process-wide limit on feature pairs per row (an integer >= 1); None: the environment's or the
    default again."""
    global _override
    _override = None if n is None else _parse(n, "max_pairs_per_row")


def pairs(m: int) -> int:
    return m * (m - 1) // 2


def _refuse(what: str, m: int, limit: int, more: int = 0) -> None:
    others = f" (and {more} more row(s) over it)" if more else ""
    raise RowTooLongError(
        f"{what} has {m} non-zeros, {pairs(m)} feature pairs, more than max_pairs_per_row={limit}{others}: AFM's "
        "attention costs O(pairs) per row (raise the limit with fastafm.set_max_pairs_per_row(n), "
        f"{ENV} or --max-pairs-per-row, or use FM / attention=False, which are O(non-zeros))")


def check_rows(indptr: np.ndarray, name: str = "X") -> None:
    """Refuse the first row of CSR `indptr` with more pairs than the limit, naming it (`name` row r)."""
    limit = max_pairs_per_row()
    indptr = np.asarray(indptr)
    n_rows = indptr.shape[0] - 1
    if n_rows <= 0 or pairs(int(indptr[-1] - indptr[0])) <= limit:  # all the non-zeros in one row fit
        return
    nnz = np.diff(indptr).astype(np.int64)
    too_long = np.flatnonzero(nnz * (nnz - 1) // 2 > limit)
    if too_long.size:
        r = int(too_long[0])
        _refuse(f"{name} row {r}", int(nnz[r]), limit, int(too_long.size) - 1)


def check_longest(m: int, where: str) -> None:
    """Refuse a source whose longest row (m non-zeros, e.g. a cache header's max_row_nnz) is over the limit."""
    limit = max_pairs_per_row()
    if pairs(int(m)) > limit:
        _refuse(f"{where}: its longest row", int(m), limit)


# A predict call runs the kernels with the GIL released and no way to stop them, so long inputs go to the core
# in blocks of about this much work (pairs + non-zeros + rows): Ctrl-C then stops a long predict between two
# blocks (at most ~1 s each at the rates above, one thread, k = t = 64), and a block is big enough that the
# cost of a call is lost in it (~22,000 Criteo-shaped rows; blocks of 2^22 cost ~20% of the throughput on a
# busy 2-core machine, where each call waits for its slowest thread, 2^24 ~3%).
PREDICT_BLOCK_WORK = 1 << 24


def row_blocks(indptr: np.ndarray, budget: Optional[int] = None) -> list:
    """[(start, stop), ...] row ranges covering CSR `indptr`'s rows in order, each of at most `budget` work
    (m (m - 1) / 2 + m + 1 for a row of m non-zeros) unless it is one row; one range when everything fits."""
    budget = PREDICT_BLOCK_WORK if budget is None else budget
    indptr = np.asarray(indptr, dtype=np.int64)
    n_rows = indptr.shape[0] - 1
    if n_rows <= 0 or pairs(int(indptr[-1] - indptr[0])) + int(indptr[-1] - indptr[0]) + n_rows <= budget:
        return [(0, max(n_rows, 0))]
    m = np.diff(indptr)
    work = np.cumsum(m * (m - 1) // 2 + m + 1)
    blocks = []
    start = 0
    while start < n_rows:
        done = int(work[start - 1]) if start else 0
        stop = max(int(np.searchsorted(work, done + budget, side="right")), start + 1)
        blocks.append((start, min(stop, n_rows)))
        start = stop
    return blocks
