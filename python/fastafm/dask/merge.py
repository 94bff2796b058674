"""The model between Dask sync rounds: the merged `State` on the first worker, each worker's `Update` of a
round, the `Delta` a merge sends back to every replica, and `merge` itself (plain NumPy, no dask import).

Averaging rule ("sparse-aware parameter averaging"):

* dense parameters (w0, W, b, h, p; FwFM's and field-aware AFM's R, S) and their optimizer slots: the mean of the workers' values, weighted by the
  rows each worker trained in the round;
* rows of the sparse parameters (w, V) and their optimizer slots: for every feature id, the mean over the workers
  that touched it, weighted by how often each saw it. A feature seen by one worker keeps that worker's value
  exactly (plain averaging would shrink its step by the number of workers); a row no worker touched is
  unchanged. An update carries only the touched rows, and so does a delta (their union over the workers), so
  both sizes follow the data, not n_features.
  Adam's step counts follow the same rules: slot step's w (a count per row) like the rows, its w0 (the dense
  parameters' count) like the dense parameters, so a count may become a non-integer mean.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

SPARSE = ("w", "V")
DENSE = ("w0", "W", "b", "h", "p", "R", "S")  # R, S: field-pair weights / logit terms (FwFM, field-aware AFM)

@dataclass
class State:
    """The merged model between rounds (never modified in place: a merge makes the next one, so an earlier
    State can be kept as the best epoch's), its round number, the Delta that made it from the previous one,
    and running counters of the current epoch and of the whole fit."""

    params: dict
    slots: dict  # {slot: {name: array}}, the optimizer's state
    epoch_loss: float = 0.0
    epoch_rows: int = 0
    stats: dict = field(default_factory=dict)
    version: int = 0
    delta: Optional["Delta"] = None

    def nbytes(self) -> int:
        return sum(a.nbytes for d in groups(self) for a in d.values())


@dataclass
class Delta:
    """What a merge changed, sent to every worker's replica instead of the whole State: the rows `ids` of w
    and V (and of their slots), and every dense parameter and slot. `version` is the State it leads to."""

    version: int
    ids: np.ndarray
    params: dict  # name -> the rows `ids` (w, V) or the whole array (dense)
    slots: dict

    def nbytes(self) -> int:
        return self.ids.nbytes + sum(a.nbytes for d in groups(self) for a in d.values())



def delta_of(state: State) -> Optional[Delta]:
    """The delta a merge attached to its State (what the replicas fetch each round)."""
    return state.delta


@dataclass
class Update:
    """One worker's result of one round: the dense parameters, the touched rows of w and V (ids, counts and
    values), both with their optimizer slots, and what the round cost."""

    rows: int
    loss_sum: float
    ids: np.ndarray
    counts: np.ndarray
    params: dict
    slots: dict
    seconds: float

    def nbytes(self) -> int:
        return self.ids.nbytes + self.counts.nbytes + sum(a.nbytes for d in groups(self) for a in d.values())


def groups(obj) -> list:
    """The parameter dict and each slot's dict of a State or Update, in a fixed order."""
    return [obj.params] + [obj.slots[s] for s in sorted(obj.slots)]


def touched_ids(ids: np.ndarray, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct feature ids (sorted, int32) among `ids` and how often each occurs. A bincount over all
    features when that is the cheaper pass, a sort otherwise (many more features than occurrences)."""
    if n_features <= 4 * ids.shape[0]:
        counts = np.bincount(ids, minlength=n_features)
        distinct = np.flatnonzero(counts)
        return distinct.astype(np.int32), counts[distinct]
    distinct, counts = np.unique(ids, return_counts=True)
    return distinct.astype(np.int32), counts


def merge(state: State, updates: list, new_epoch: bool, combine: str = "average", full_delta: bool = False) -> State:
    """The next State: `updates` combined onto `state` (see the module docstring), the counters, and the Delta
    the replicas need: the union of the touched rows (every row with `full_delta`, the whole model as before
    rows were tracked: the same values, more bytes)."""
    updates = [u for u in updates if u.rows > 0]
    stats = dict(state.stats)
    start = time.perf_counter()
    params = dict(state.params)
    slots = {slot: dict(d) for slot, d in state.slots.items()}
    # Each (destination, source) pair: the parameters, then every optimizer slot, merged by the same rule.
    pairs = [(params, lambda u: u.params)] + [(slots[s], lambda u, s=s: u.slots[s]) for s in sorted(slots)]
    total = sum(u.rows for u in updates)
    union = np.zeros(0, np.int32)
    if total:
        for name in DENSE:
            for dst, src in pairs:
                if name not in dst:  # a slot that covers only some parameters (adam's step counts)
                    continue
                old = np.asarray(dst[name], np.float64)
                if combine == "sum":
                    acc = old + sum(np.asarray(src(u)[name], np.float64) - old for u in updates)
                else:
                    acc = sum(np.asarray(src(u)[name], np.float64) * u.rows for u in updates) / total
                dst[name] = acc.astype(np.float32)
        union = np.unique(np.concatenate([u.ids for u in updates]))
        den = np.zeros(union.shape[0], np.float64)
        positions = [np.searchsorted(union, u.ids) for u in updates]
        for u, pos in zip(updates, positions):
            den[pos] += u.counts
        for name in SPARSE:
            shape = (-1,) + (1,) * (state.params[name].ndim - 1)
            # Each worker's share of a row's weight (exactly 1.0 where it was the only one to touch the row,
            # so such rows keep that worker's values bit for bit).
            weights = [(u.counts / den[pos]).astype(np.float32).reshape(shape) for u, pos in zip(updates, positions)]
            for dst, src in pairs:
                if name not in dst:
                    continue
                full = dst[name].copy()
                if combine == "sum":  # old + the sum of the workers' changes
                    acc = full[union]
                    old = acc.copy()
                    for u, pos in zip(updates, positions):
                        acc[pos] += src(u)[name] - old[pos]
                else:  # the mean over the workers that touched the row, weighted by their counts
                    acc = np.zeros((union.shape[0],) + full.shape[1:], np.float32)
                    for u, pos, c in zip(updates, positions, weights):
                        acc[pos] += c * src(u)[name]
                full[union] = acc
                dst[name] = full
    n_features = state.params["w"].shape[0]
    ids = np.arange(n_features, dtype=np.int32) if full_delta else union.astype(np.int32)
    delta = Delta(state.version + 1, ids,
                  {name: params[name][ids] if name in SPARSE else params[name] for name in params},
                  {slot: {name: d[name][ids] if name in SPARSE else d[name] for name in d} for slot, d in slots.items()})
    stats["rounds"] = stats.get("rounds", 0) + 1
    stats["bytes_delta"] = stats.get("bytes_delta", 0) + delta.nbytes()
    stats["bytes_up"] = stats.get("bytes_up", 0) + sum(u.nbytes() for u in updates)
    stats["updates"] = stats.get("updates", 0) + len(updates)
    stats["rows"] = stats.get("rows", 0) + sum(u.rows for u in updates)
    stats["merge_seconds"] = stats.get("merge_seconds", 0.0) + time.perf_counter() - start
    stats["compute_seconds"] = stats.get("compute_seconds", 0.0) + sum(u.seconds for u in updates)
    stats["max_compute_seconds"] = stats.get("max_compute_seconds", 0.0) + max((u.seconds for u in updates),
                                                                               default=0.0)
    loss = sum(u.loss_sum for u in updates)
    rows = sum(u.rows for u in updates)
    if new_epoch:
        return State(params, slots, loss, rows, stats, delta.version, delta)
    return State(params, slots, state.epoch_loss + loss, state.epoch_rows + rows, stats, delta.version, delta)


def summarize(state: State) -> dict:
    """What the driver needs after an epoch: the epoch's mean loss, whether the model is finite, counters."""
    finite = all(np.isfinite(np.sum(a, dtype=np.float64)) for d in groups(state) for a in d.values())
    return {"loss_sum": state.epoch_loss, "rows": state.epoch_rows, "finite": bool(finite),
            "stats": dict(state.stats), "state_bytes": state.nbytes()}


def fetch(state: State) -> tuple:
    """The parameters and optimizer slots (to the driver, once, at the end of fit)."""
    return state.params, state.slots

