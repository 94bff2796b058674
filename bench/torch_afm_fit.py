"""The PyTorch AFM a user would write instead of fastafm, trained for accuracy (issue 12's yardstick).

The model is docs/model.md's AFM written in PyTorch the way torchfm and most CTR code do it: embeddings of
size k, attention size t, dropout 0.2 on the pooled vector, Adam with weight decay 1e-6 (torchfm's example),
mean-reduced loss (MSE or binary cross-entropy on the logit), batch 1024, early stopping on the validation loss
(RMSE / log loss) after n_iter_no_change=2 epochs without improvement, the best epoch's weights restored. Rows
are CSR (any number of non-zeros): they are padded to the longest row with id n_features (a zero embedding) and
value 0, and padded pairs are masked out of the softmax, so multi-hot fields work as in fastafm.

PyTorch is a benchmark-only dependency: nothing in the package or its tests imports this module.
"""
from __future__ import annotations

import copy
import time

import numpy as np
import torch
from torch import nn


def padded(X):
    """CSR rows -> (ids (n, m) int64 with n_features as padding, values (n, m) float32)."""
    nnz = np.diff(X.indptr)
    m = max(int(nnz.max()), 2)
    ids = np.full((X.shape[0], m), X.shape[1], dtype=np.int64)
    vals = np.zeros((X.shape[0], m), dtype=np.float32)
    rows = np.repeat(np.arange(X.shape[0]), nnz)
    cols = np.arange(X.nnz) - np.repeat(X.indptr[:-1], nnz)
    ids[rows, cols] = X.indices
    vals[rows, cols] = X.data
    return torch.as_tensor(ids), torch.as_tensor(vals)


class PaddedAFM(nn.Module):
    def __init__(self, n_features: int, m: int, k: int, t: int, dropout: float, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.V = nn.Embedding(n_features + 1, k, padding_idx=n_features)
        self.w = nn.Embedding(n_features + 1, 1, padding_idx=n_features)
        with torch.no_grad():
            self.V.weight.normal_(0.0, 0.01, generator=g)
            self.V.weight[n_features].zero_()
            self.w.weight.zero_()
        glorot = (2.0 / (t + k)) ** 0.5
        self.w0 = nn.Parameter(torch.zeros(()))
        self.W = nn.Parameter(torch.randn(t, k, generator=g) * glorot)
        self.b = nn.Parameter(torch.randn(t, generator=g) * glorot)
        self.h = nn.Parameter(torch.randn(t, generator=g) * glorot)
        self.p = nn.Parameter(torch.ones(k))
        r, s = np.triu_indices(m, k=1)
        self.register_buffer("r", torch.as_tensor(r, dtype=torch.long))
        self.register_buffer("s", torch.as_tensor(s, dtype=torch.long))
        self.dropout = nn.Dropout(dropout)

    def forward(self, ids, vals):
        vx = self.V(ids) * vals.unsqueeze(-1)                       # (B, m, k)
        e = vx[:, self.r] * vx[:, self.s]                           # (B, P, k)
        real = (vals[:, self.r] != 0) & (vals[:, self.s] != 0)      # (B, P) pairs of two real non-zeros
        score = torch.relu(e @ self.W.T + self.b) @ self.h          # (B, P)
        a = torch.softmax(score.masked_fill(~real, -1e30), dim=1) * real  # rows with no pair: all 0
        q = self.dropout(torch.einsum("bp,bpk->bk", a, e))
        linear = (self.w(ids).squeeze(-1) * vals).sum(dim=1)
        return self.w0 + linear + q @ self.p


def fit(data, lr: float, k: int = 64, t: int = 64, batch_size: int = 1024, dropout: float = 0.2,
        weight_decay: float = 1e-6, max_epochs: int = 30, n_iter_no_change: int = 2, seed: int = 0, threads: int = 1):
    """Train on data.train with early stopping on data.valid; returns the test predictions' raw scores and the
    run's record (best epoch, epochs run, seconds)."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    classification = data.task == "classification"
    tr_ids, tr_vals = padded(data.train[0])
    m = tr_ids.shape[1]

    def pad_to(X):
        ids, vals = padded(X)
        if ids.shape[1] > m:
            raise ValueError("evaluation rows longer than every training row")
        extra = m - ids.shape[1]
        return (nn.functional.pad(ids, (0, extra), value=data.n_features), nn.functional.pad(vals, (0, extra)))

    va, te = pad_to(data.valid[0]), pad_to(data.test[0])
    y_tr = torch.as_tensor(np.asarray(data.train[1], np.float32))
    y_va = np.asarray(data.valid[1], np.float64)
    model = PaddedAFM(data.n_features, m, k, t, dropout, seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.BCEWithLogitsLoss() if classification else nn.MSELoss()

    def scores(ids_vals):
        model.eval()
        with torch.no_grad():
            out = torch.cat([model(ids_vals[0][i:i + 8192], ids_vals[1][i:i + 8192])
                             for i in range(0, ids_vals[0].shape[0], 8192)])
        model.train()
        return out.numpy().astype(np.float64)

    def valid_loss():
        s = scores(va)
        if classification:
            p = np.clip(1 / (1 + np.exp(-s)), 1e-7, 1 - 1e-7)
            return float(-np.mean(y_va * np.log(p) + (1 - y_va) * np.log(1 - p)))
        return float(np.sqrt(np.mean((s - y_va) ** 2)))

    gen = torch.Generator().manual_seed(seed)
    best, best_state, best_epoch, since, epochs = np.inf, None, 0, 0, 0
    start = time.perf_counter()
    for epoch in range(1, max_epochs + 1):
        order = torch.randperm(tr_ids.shape[0], generator=gen)
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(tr_ids[idx], tr_vals[idx]), y_tr[idx])
            loss.backward()
            opt.step()
        epochs = epoch
        score = valid_loss()
        if not np.isfinite(score):
            break
        if score < best:
            best, best_epoch, since = score, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            since += 1
            if since >= n_iter_no_change:
                break
    seconds = time.perf_counter() - start
    if best_state is not None:
        model.load_state_dict(best_state)
    return scores(te), {"best_epoch": best_epoch, "epochs_run": epochs, "seconds": seconds, "valid_loss": best}
