"""FLOP model of AFM training and prediction (issue 3, docs/model.md), used to turn times into GFLOP/s.

A row with m non-zeros has P = m(m-1)/2 pairs. Counting one multiply-add as 2 FLOPs and every other
arithmetic operation (compare, exp, sqrt, divide) as 1, per pair:

forward (prediction and training)                                   FLOPs
    e_rs = V[i_r] * V[i_s] * (x_r x_s)                               2k   (+1 for x_r x_s)
    z_rs = W e_rs + b                                                2tk + t      <- GEMM  E W^T
    u = ReLU(z);  s_rs = h . u                                       t + 2t
    softmax over the row's pairs (max, exp, sum, divide)             4
    q += a_rs e_rs                                                   2k
                                                     total  2tk + 4k + 4t + 5
backward (training only)
    gamma_rs = c . e_rs;  ds_rs = a_rs (gamma_rs - c.q)              2k + 2
    dh += ds u;  delta = ds h [z > 0]                                2t + 2t
    dW += delta e^T;  db += delta                                    2tk + t      <- GEMM  dA^T E
    de = W^T delta + a_rs c                                          2tk + 2k     <- GEMM  dA W
    dV[i_r] += de * V[i_s] * xx;  dV[i_s] += de * V[i_r] * xx        6k
                                                     total  4tk + 10k + 5t + 2
so training costs 6tk + 14k + 9t + 7 per pair (the issue's 6·P·t·k + c·P·(k+t), c ≈ 9..14) and
prediction 2tk + 4k + 4t + 5. With attention=False (uniform pooling) the attention network is skipped:
forward 4k + 1, backward 8k per pair (de = c, no GEMM).

Per row on top: the linear part 2m, the output p.(d*q) 3k, the loss 3; in training also c = g p d (2k),
dp += g d q (3k), dw (m). Per mini-batch: Adagrad (6 FLOPs per element: g^2, +, sqrt, /, *lr, -) on the
dense parameters (tk + 2t + k + 1) and on the touched rows of V and w (k + 1 each), and attention L2 (2tk).
These are small next to the pair terms (< 1% for Frappe shapes) but counted.

`gemm_*` functions give the GEMM-only part (2·P·t·k forward, 6·P·t·k training), the part a fused kernel can
run at FMA peak; `*_flops` give the full model. The benchmarks report GFLOP/s of the full model.
"""
from __future__ import annotations

import numpy as np

#: FLOPs per element of one Adagrad step: g*g, G += g2, sqrt(G), g / sqrt, * lr, theta -= ...
ADAGRAD_FLOPS_PER_ELEMENT = 6
#: Bytes one Adagrad step moves per float32 element: read theta, G, g; write theta, G.
ADAGRAD_BYTES_PER_ELEMENT = 20


def pairs(row_nnz) -> np.ndarray:
    """P = m(m-1)/2 per row (int64 array, or an int for a scalar m)."""
    m = np.asarray(row_nnz, dtype=np.int64)
    p = m * (m - 1) // 2
    return int(p) if p.ndim == 0 else p


def pair_flops_predict(k: int, t: int, attention: bool = True) -> int:
    """FLOPs of the forward pass per pair."""
    return 2 * t * k + 4 * k + 4 * t + 5 if attention else 4 * k + 1


def pair_flops_train(k: int, t: int, attention: bool = True) -> int:
    """FLOPs of forward + backward per pair."""
    if attention:
        return pair_flops_predict(k, t) + 4 * t * k + 10 * k + 5 * t + 2
    return pair_flops_predict(k, t, False) + 8 * k


def row_flops_predict(m, k: int, t: int, attention: bool = True):
    """FLOPs to predict rows with m non-zeros (m: int or array)."""
    m = np.asarray(m, dtype=np.int64)
    out = pairs(m) * pair_flops_predict(k, t, attention) + 2 * m + 3 * k + 3
    return int(out) if out.ndim == 0 else out


def row_flops_train(m, k: int, t: int, attention: bool = True):
    """FLOPs of one training row's forward and backward passes (without the optimizer step)."""
    m = np.asarray(m, dtype=np.int64)
    out = pairs(m) * pair_flops_train(k, t, attention) + 3 * m + 8 * k + 3
    return int(out) if out.ndim == 0 else out


def batch_update_flops(k: int, t: int, touched: int, optimizer: str = "adagrad", attention_l2: bool = False) -> int:
    """FLOPs of one mini-batch's parameter update: dense parameters plus `touched` rows of V and w."""
    per = ADAGRAD_FLOPS_PER_ELEMENT if optimizer == "adagrad" else 2
    dense = t * k + 2 * t + k + 1
    return per * (dense + touched * (k + 1)) + (2 * t * k if attention_l2 else 0)


def touched_per_batch(indptr, indices, order, batch_size: int) -> np.ndarray:
    """Distinct feature ids in each mini-batch of the rows `order` (what the sparse update touches)."""
    indptr = np.asarray(indptr, dtype=np.int64)
    order = np.asarray(order, dtype=np.int64)
    lengths = np.diff(indptr)[order]
    ends = np.cumsum(lengths)
    # Gather the non-zeros of the rows in `order`, one after another.
    pos = np.arange(int(ends[-1]) if len(ends) else 0) - np.repeat(ends - lengths, lengths) + np.repeat(
        indptr[order], lengths)
    ids = np.asarray(indices)[pos]
    cum = np.concatenate([[0], ends])
    bounds = cum[np.append(np.arange(0, len(order), batch_size), len(order))]
    return np.asarray([np.unique(ids[a:b]).size for a, b in zip(bounds[:-1], bounds[1:])], dtype=np.int64)


def epoch_flops_train(row_nnz, k: int, t: int, batch_size: int, attention: bool = True, touched=None,
                      optimizer: str = "adagrad", gemm_only: bool = False) -> float:
    """FLOPs of one training epoch over rows with non-zero counts `row_nnz`.

    Parameters
    ----------
    row_nnz : array of int
        Non-zeros per row (np.diff(X.indptr)).
    touched : int, array or None
        Distinct features per batch (total over the epoch if an int, per batch if an array). None takes
        the upper bound, one touched row per non-zero (exact without shared ids, an overestimate otherwise;
        its share of the total is below 1% for Frappe shapes). `touched_per_batch` gives the exact counts.
    gemm_only : bool
        Only the 6·P·t·k of the three attention GEMMs.
    """
    m = np.asarray(row_nnz, dtype=np.int64)
    if gemm_only:
        return float(6 * t * k * pairs(m).sum()) if attention else 0.0
    total = float(row_flops_train(m, k, t, attention).sum())
    n_batches = -(-len(m) // batch_size)
    if touched is None:
        touched_total = float(m.sum())
    else:
        touched_total = float(np.sum(touched))
    per = ADAGRAD_FLOPS_PER_ELEMENT if optimizer == "adagrad" else 2
    total += n_batches * per * (t * k + 2 * t + k + 1) + per * touched_total * (k + 1)
    return total


def epoch_flops_predict(row_nnz, k: int, t: int, attention: bool = True, gemm_only: bool = False) -> float:
    """FLOPs to predict every row (non-zero counts `row_nnz`)."""
    m = np.asarray(row_nnz, dtype=np.int64)
    if gemm_only:
        return float(2 * t * k * pairs(m).sum()) if attention else 0.0
    return float(row_flops_predict(m, k, t, attention).sum())


def gradient_flops(row_nnz, k: int, t: int, attention: bool = True) -> float:
    """FLOPs of one batch gradient (forward + backward of every row, no update): `_testing.batch_gradients`."""
    return float(row_flops_train(np.asarray(row_nnz, dtype=np.int64), k, t, attention).sum())


def summary(row_nnz, k: int, t: int, batch_size: int) -> dict:
    """Per-row averages for documentation: pairs, training and prediction FLOPs, GEMM share."""
    m = np.asarray(row_nnz, dtype=np.int64)
    n = max(len(m), 1)
    train = epoch_flops_train(m, k, t, batch_size)
    gemm = epoch_flops_train(m, k, t, batch_size, gemm_only=True)
    return {
        "rows": int(len(m)),
        "mean_pairs": float(pairs(m).sum() / n),
        "train_flops_per_row": train / n,
        "predict_flops_per_row": epoch_flops_predict(m, k, t) / n,
        "gemm_share_train": gemm / train if train else 0.0,
    }


if __name__ == "__main__":  # a quick table of the model for the shapes
    for name, m in (("frappe", 10), ("criteo", 39)):
        for k in (16, 64, 256):
            s = summary(np.full(1000, m), k, k, 128)
            print(f"{name:7s} m={m:2d} P={pairs(m):4d} k=t={k:3d}: train {s['train_flops_per_row'] / 1e6:8.3f} "
                  f"MFLOP/row (GEMM {100 * s['gemm_share_train']:.1f}%), "
                  f"predict {s['predict_flops_per_row'] / 1e6:8.3f} MFLOP/row")
