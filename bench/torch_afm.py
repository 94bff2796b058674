"""A PyTorch AFM written from the paper's equations (docs/model.md): the baseline fastafm must beat.

Same model and objective as fastafm, for one-hot fixed-field rows given as a (batch, fields) id tensor:

    e_rs = V[i_r] * V[i_s]                   (B, P, k)   all pairs r < s of the fields, storage order
    a    = softmax_pairs(h . ReLU(e W^T + b)) (B, P)
    q    = sum_rs a_rs e_rs                   (B, k)      then dropout (inverted scaling) in training
    y    = w0 + sum_r w[i_r] + p . q
    J    = sum_batch (y - t)^2 / 2 + attention_l2/2 ||W||^2      (summed over the batch, as the authors' code)

Optimizer: torch.optim.Adagrad(lr, initial_accumulator_value=1e-8). The embeddings are nn.Embedding with
sparse=False by default, so every step updates all rows of V and w; rows with a zero gradient do not change
under Adagrad (no lr decay, no weight decay), so this is the same update as fastafm's sparse one, only slower
when n_features is large (Criteo-shaped data: 1e6 x k per step). sparse=True gives sparse embedding
gradients, which torch's Adagrad also applies row-wise (the fair setting for hashed ids).
Initialisation as docs/model.md. Batches are built once, in memory, before timing.

PyTorch is a benchmark-only dependency: nothing in the package or its tests imports this module.

    python bench/torch_afm.py --rows 20000 --k 64 --batch 256 --threads 2
"""
from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np
import torch
from torch import nn


class TorchAFM(nn.Module):
    """AFM over (batch, n_fields) feature ids; values are all 1 (one-hot fields)."""

    def __init__(self, n_features: int, n_fields: int, k: int, t: int, dropout: float = 0.2,
                 init_std: float = 0.01, seed: int = 0, sparse: bool = False):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        glorot = (2.0 / (t + k)) ** 0.5
        self.V = nn.Embedding(n_features, k, sparse=sparse)
        self.w = nn.Embedding(n_features, 1, sparse=sparse)
        with torch.no_grad():
            self.V.weight.normal_(0.0, init_std, generator=g)
            self.w.weight.zero_()
        self.w0 = nn.Parameter(torch.zeros(()))
        self.W = nn.Parameter(torch.randn(t, k, generator=g) * glorot)
        self.b = nn.Parameter(torch.randn(t, generator=g) * glorot)
        self.h = nn.Parameter(torch.randn(t, generator=g))
        self.p = nn.Parameter(torch.ones(k))
        r, s = np.triu_indices(n_fields, k=1)
        self.register_buffer("r", torch.as_tensor(r, dtype=torch.long))
        self.register_buffer("s", torch.as_tensor(s, dtype=torch.long))
        self.dropout = nn.Dropout(dropout)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        emb = self.V(ids)                                    # (B, F, k)
        e = emb[:, self.r] * emb[:, self.s]                  # (B, P, k) pair-wise interaction layer
        z = torch.relu(e @ self.W.T + self.b)                # (B, P, t)
        a = torch.softmax(z @ self.h, dim=1)                 # (B, P)    softmax over the row's pairs
        q = torch.einsum("bp,bpk->bk", a, e)                 # (B, k)    attention-based pooling
        q = self.dropout(q)
        return self.w0 + self.w(ids).sum(dim=(1, 2)) + q @ self.p


@contextlib.contextmanager
def torch_threads(n: int):
    """torch.set_num_threads(n) for the duration (it is process-wide), restored afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def make_batches(ids: np.ndarray, y: np.ndarray, batch_size: int, seed: int = 0):
    """Shuffled in-memory batches: a list of (ids LongTensor (B, F), y FloatTensor (B,))."""
    order = np.random.default_rng(seed).permutation(ids.shape[0])
    ids_t = torch.as_tensor(np.ascontiguousarray(ids[order]), dtype=torch.long)
    y_t = torch.as_tensor(np.ascontiguousarray(y[order]), dtype=torch.float32)
    return [(ids_t[i:i + batch_size], y_t[i:i + batch_size]) for i in range(0, ids.shape[0], batch_size)]


class Trainer:
    """Model, optimizer and batches of one configuration; `epoch()` trains over every batch once."""

    def __init__(self, ids, y, n_features: int, k: int, t: int, batch_size: int, lr: float = 0.05,
                 dropout: float = 0.2, attention_l2: float = 0.0, seed: int = 0, sparse: bool = False):
        torch.manual_seed(seed)
        if sparse:
            # Explicit opt-out (torch warns otherwise): the sparse gradients come from torch itself.
            torch.sparse.check_sparse_tensor_invariants.disable()
        self.model = TorchAFM(n_features, ids.shape[1], k, t, dropout=dropout, seed=seed, sparse=sparse)
        self.model.train()
        self.opt = torch.optim.Adagrad(self.model.parameters(), lr=lr, initial_accumulator_value=1e-8)
        self.attention_l2 = attention_l2
        self.batches = make_batches(ids, y, batch_size, seed)
        self.n_rows = int(ids.shape[0])

    def step(self, ids, y) -> float:
        self.opt.zero_grad(set_to_none=True)
        loss = 0.5 * torch.sum((self.model(ids) - y) ** 2)
        if self.attention_l2:
            loss = loss + 0.5 * self.attention_l2 * torch.sum(self.model.W ** 2)
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def epoch(self, max_batches: int | None = None) -> float:
        """One pass over the batches (or the first max_batches); returns the summed loss."""
        total = 0.0
        for i, (ids, y) in enumerate(self.batches):
            if max_batches is not None and i >= max_batches:
                break
            total += self.step(ids, y)
        return total


def train_epoch_seconds(data, k: int, t: int, batch_size: int, threads: int, warmup_batches: int = 2,
                        repeats: int = 1, lr: float = 0.05, dropout: float = 0.2, sparse: bool = False) -> float:
    """Seconds of one PyTorch training epoch (best of `repeats`) over `data`.

    `data` is a bench.data.Dataset (or any object with `ids` (n_rows, n_fields), `y` and `n_features`).
    A few warm-up steps run first (allocator, thread pool); the timed epochs continue training the model.
    """
    with torch_threads(threads):
        tr = Trainer(data.ids, data.y, data.n_features, k, t, batch_size, lr=lr, dropout=dropout, sparse=sparse)
        tr.epoch(max_batches=warmup_batches)
        best = float("inf")
        for _ in range(max(1, repeats)):
            start = time.perf_counter()
            tr.epoch()
            best = min(best, time.perf_counter() - start)
    return best


def main(argv=None) -> int:
    import data as bench_data
    import flops

    ap = argparse.ArgumentParser(description="Time a PyTorch AFM training epoch")
    ap.add_argument("--data", default="frappe", choices=["frappe", "frappe-real", "criteo"])
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--t", type=int, default=None, help="attention size (default k)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--sparse", action="store_true", help="sparse embedding gradients (nn.Embedding(sparse=True))")
    args = ap.parse_args(argv)
    t = args.t or args.k
    ds = bench_data.make(args.data, args.rows)
    sec = train_epoch_seconds(ds, args.k, t, args.batch, args.threads, repeats=args.repeats, sparse=args.sparse)
    gf = flops.epoch_flops_train(ds.row_nnz, args.k, t, args.batch) / sec / 1e9
    print(f"torch {torch.__version__} {args.data} rows={ds.n_rows} k={args.k} t={t} batch={args.batch} "
          f"threads={args.threads} sparse={args.sparse}: {sec:.3f} s/epoch, {ds.n_rows / sec:,.0f} rows/s, "
          f"{gf:.2f} GFLOP/s")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
