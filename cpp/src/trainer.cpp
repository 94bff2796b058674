#include "afm/trainer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>

#include "afm/rng.hpp"

namespace afm {

void DenseGrad::resize(int k_, int t_) {
    k = k_;
    t = t_;
    data.assign(static_cast<size_t>(t) * k + 2 * static_cast<size_t>(t) + k, 0.0f);
    w0 = 0.0;
}

int64_t block_pair_target(int k, int t) {
    // Bytes of E and Z tiles per block; FASTAFM_BLOCK_BYTES overrides it (tuning and tests).
    static const int64_t budget = [] {
        const char* env = std::getenv("FASTAFM_BLOCK_BYTES");
        const long long v = env ? std::atoll(env) : 0;
        return v > 0 ? static_cast<int64_t>(v) : int64_t{256 * 1024};
    }();
    const int64_t per_pair = 4 * static_cast<int64_t>(k + t);
    return std::max<int64_t>(budget / per_pair, 1);
}

void transpose(const float* W, int t, int k, float* Wt) {
    constexpr int B = 32;  // cache blocks
    for (int j0 = 0; j0 < t; j0 += B)
        for (int f0 = 0; f0 < k; f0 += B)
            for (int j = j0; j < std::min(t, j0 + B); ++j)
                for (int f = f0; f < std::min(k, f0 + B); ++f) Wt[static_cast<int64_t>(f) * t + j] = W[static_cast<int64_t>(j) * k + f];
}

double row_loss(Loss loss, float y_pred, float label, float* grad) {
    if (loss == Loss::squared) {
        const double r = static_cast<double>(y_pred) - label;
        *grad = static_cast<float>(r);
        return 0.5 * r * r;
    }
    // logistic: l = log(1 + exp(-t y)) = softplus(-t y);  dl/dy = -t * sigmoid(-t y)
    const double z = -static_cast<double>(label) * y_pred;
    const double softplus = std::max(z, 0.0) + std::log1p(std::exp(-std::abs(z)));
    const double sig = z >= 0 ? 1.0 / (1.0 + std::exp(-z)) : std::exp(z) / (1.0 + std::exp(z));
    *grad = static_cast<float>(-label * sig);
    return softplus;
}

Trainer::Trainer(const ModelView& model, const ModelView& accum, const CsrView& X, const float* y,
                 const TrainConfig& cfg)
    : m_(model), acc_(accum), X_(X), y_(y), cfg_(cfg), isa_(kernels()), n_threads_(resolve_threads(cfg.n_threads)) {
    const int k = m_.k, t = m_.t;
    dense_size_ = static_cast<int64_t>(t) * k + 2 * t + k;
    int64_t max_nnz = 0;
    for (int64_t r = 0; r < X_.n_rows; ++r) max_nnz = std::max(max_nnz, X_.indptr[r + 1] - X_.indptr[r]);
    // Uniform pooling never forms pair tiles (O(k nnz) per row), so it reserves none.
    max_row_pairs_ = cfg_.attention ? pair_count(max_nnz) : 0;
    const int64_t pair_cap = cfg_.attention ? std::max(block_pair_target(k, t), max_row_pairs_) : 1;
    Wt_.assign(static_cast<size_t>(t) * k, 0.0f);
    scratch_.resize(n_threads_);
    dense_.resize(n_threads_);
    for (int i = 0; i < n_threads_; ++i) {
        scratch_[i].reserve(pair_cap, kMaxBlockRows, k, t);
        dense_[i].resize(k, t);
    }
    loss_.assign(n_threads_, 0.0);
    total_.resize(k, t);
    slot_of_feature_.assign(static_cast<size_t>(m_.n_features), -1);
}

void Trainer::prepare_buffers(const int64_t* order, int64_t n_order) {
    // Largest number of non-zeros in one batch of this epoch, so that the batch loop never allocates.
    const int64_t bs = std::max(cfg_.batch_size, 1);
    int64_t max_batch_nnz = 0;
    for (int64_t b0 = 0; b0 < n_order; b0 += bs) {
        int64_t nnz = 0;
        const int64_t b1 = std::min(n_order, b0 + bs);
        for (int64_t i = b0; i < b1; ++i) nnz += X_.indptr[order[i] + 1] - X_.indptr[order[i]];
        max_batch_nnz = std::max(max_batch_nnz, nnz);
    }
    const size_t nz = static_cast<size_t>(std::max<int64_t>(max_batch_nnz, 1));
    if (dw_nz_.size() < nz) {
        dV_nz_.resize(nz * m_.k);
        dw_nz_.resize(nz);
        nz_slot_.resize(nz);
        touched_.resize(nz);
        slot_ptr_.resize(nz + 1);
        slot_nz_.resize(nz);
        dV_touched_.resize(nz * m_.k);
        dw_touched_.resize(nz);
    }
    nz_offset_.resize(static_cast<size_t>(std::min(bs, std::max<int64_t>(n_order, 1))) + 1);
}

void Trainer::batch_setup(const int64_t* rows, int64_t nb) {
    // Non-zero offsets of each row inside the batch, and a slot per distinct feature.
    nz_offset_[0] = 0;
    int64_t pos = 0;
    n_touched_ = 0;
    for (int64_t i = 0; i < nb; ++i) {
        const int64_t lo = X_.indptr[rows[i]], hi = X_.indptr[rows[i] + 1];
        for (int64_t j = lo; j < hi; ++j, ++pos) {
            const feature_t f = X_.indices[j];
            int32_t slot = slot_of_feature_[f];
            if (slot < 0) {
                slot = static_cast<int32_t>(n_touched_++);
                slot_of_feature_[f] = slot;
                touched_[slot] = f;
            }
            nz_slot_[pos] = slot;
        }
        nz_offset_[i + 1] = pos;
    }
    // Group non-zero positions by slot (counting sort, stable: row order kept within a feature).
    std::fill(slot_ptr_.begin(), slot_ptr_.begin() + n_touched_ + 1, 0);
    for (int64_t j = 0; j < pos; ++j) ++slot_ptr_[nz_slot_[j] + 1];
    for (int64_t s = 0; s < n_touched_; ++s) slot_ptr_[s + 1] += slot_ptr_[s];
    for (int64_t j = 0; j < pos; ++j) slot_nz_[slot_ptr_[nz_slot_[j]]++] = j;
    for (int64_t s = n_touched_; s > 0; --s) slot_ptr_[s] = slot_ptr_[s - 1];
    slot_ptr_[0] = 0;
    if (cfg_.attention) transpose(m_.W, m_.t, m_.k, Wt_.data());
}

// Called by every thread of the team (orphaned worksharing constructs).
void Trainer::batch_compute(const int64_t* rows, int64_t nb, bool use_dropout) {
    const int k = m_.k;
    const int tid = thread_id();
    BlockScratch& sc = scratch_[tid];
    DenseGrad& dg = dense_[tid];
    std::fill(dg.data.begin(), dg.data.end(), 0.0f);
    dg.w0 = 0.0;
    const bool drop = use_dropout && cfg_.dropout > 0.0f;
    double loss_sum = 0.0;

    // This thread's fixed chunk of the batch, walked in blocks of whole rows that fit the scratch tiles.
    const int team = team_size();  // may be below n_threads_ if the OpenMP runtime limits the team
    const int64_t per_thread = (nb + team - 1) / team;
    const int64_t lo = std::min(nb, tid * per_thread), hi = std::min(nb, lo + per_thread);
    BlockRows block;
    block.has_mask = drop;
    for (int64_t i = lo; i < hi;) {
        block.n = 0;
        int64_t pairs = 0;
        while (i < hi && block.n < sc.row_cap) {
            const int64_t row = rows[i];
            const int64_t start = X_.indptr[row], nnz = X_.indptr[row + 1] - start;
            const int64_t P = cfg_.attention ? pair_count(nnz) : 0;
            if (block.n > 0 && pairs + P > sc.pair_cap) break;
            const int r = block.n++;
            block.idx[r] = X_.indices + start;
            block.x[r] = X_.values + start;
            block.nnz[r] = nnz;
            block.dV[r] = dV_nz_.data() + nz_offset_[i] * k;
            block.dw[r] = dw_nz_.data() + nz_offset_[i];
            if (drop)
                dropout_mask_row(cfg_.seed, cfg_.epoch, static_cast<uint64_t>(row), k, cfg_.dropout,
                                 sc.mask.data() + static_cast<int64_t>(r) * k);
            pairs += P;
            ++i;
        }
        isa_.forward(m_, Wt_.data(), cfg_.attention, block, sc);
        const int64_t first = i - block.n;
        for (int r = 0; r < block.n; ++r) loss_sum += row_loss(cfg_.loss, sc.y[r], y_[rows[first + r]], &sc.g[r]);
        isa_.backward(m_, cfg_.attention, block, sc, dg.view());
    }
    loss_[tid] += loss_sum;
#pragma omp barrier

    // Dense gradients: sum the thread buffers in thread order, element-parallel.
    float* tot = total_.data.data();
#pragma omp for schedule(static)
    for (int64_t e = 0; e < dense_size_; ++e) {
        float acc = 0.0f;
        for (int th = 0; th < team; ++th) acc += dense_[th].data[e];
        tot[e] = acc;
    }
#pragma omp single
    {
        double w0 = 0.0;
        for (int th = 0; th < team; ++th) w0 += dense_[th].w0;
        total_.w0 = w0;
    }
    if (cfg_.attention_l2 > 0.0f) {
        const int64_t nW = static_cast<int64_t>(m_.t) * k;
#pragma omp for schedule(static)
        for (int64_t e = 0; e < nW; ++e) tot[e] += cfg_.attention_l2 * m_.W[e];
    }

    // Sparse gradients: per touched feature, sum its non-zeros' gradients in row order (+ lazy L2).
#pragma omp for schedule(static)
    for (int64_t s = 0; s < n_touched_; ++s) {
        const feature_t f = touched_[s];
        float* dv = dV_touched_.data() + s * k;
        float dw = 0.0f;
        std::fill(dv, dv + k, 0.0f);
        for (int64_t j = slot_ptr_[s]; j < slot_ptr_[s + 1]; ++j) {
            const int64_t nz = slot_nz_[j];
            const float* src = dV_nz_.data() + nz * k;
#pragma omp simd
            for (int f2 = 0; f2 < k; ++f2) dv[f2] += src[f2];
            dw += dw_nz_[nz];
        }
        if (cfg_.l2 > 0.0f) {
            const float* v = m_.V + static_cast<int64_t>(f) * k;
            for (int f2 = 0; f2 < k; ++f2) dv[f2] += cfg_.l2 * v[f2];
            dw += cfg_.l2 * m_.w[f];
        }
        dw_touched_[s] = dw;
    }
}

void Trainer::batch_update() {
    const int k = m_.k, t = m_.t;
    const float lr = cfg_.learning_rate;
    const bool ada = cfg_.optimizer == Optimizer::adagrad;
    const IsaKernels& isa = isa_;
    auto apply_update = [ada, &isa](float* theta, float* accum, const float* grad, int64_t n, float step) {
        if (ada) isa.adagrad(theta, accum, grad, n, step);
        else isa.sgd(theta, grad, n, step);
    };
#pragma omp for schedule(static)
    for (int64_t s = 0; s < n_touched_; ++s) {
        const int64_t f = touched_[s];
        apply_update(m_.V + f * k, ada ? acc_.V + f * k : nullptr, dV_touched_.data() + s * k, k, lr);
        apply_update(m_.w + f, ada ? acc_.w + f : nullptr, dw_touched_.data() + s, 1, lr);
        slot_of_feature_[f] = -1;
    }
    // Dense parameters, in row blocks of W so both threads share the largest array.
#pragma omp for schedule(static)
    for (int j = 0; j < t; ++j) {
        const int64_t off = static_cast<int64_t>(j) * k;
        apply_update(m_.W + off, ada ? acc_.W + off : nullptr, total_.W() + off, k, lr);
    }
#pragma omp single
    {
        apply_update(m_.b, ada ? acc_.b : nullptr, total_.b(), t, lr);
        apply_update(m_.h, ada ? acc_.h : nullptr, total_.h(), t, lr);
        if (cfg_.learn_projection) apply_update(m_.p, ada ? acc_.p : nullptr, total_.p(), k, lr);
        const float gw0 = static_cast<float>(total_.w0);
        apply_update(m_.w0, ada ? acc_.w0 : nullptr, &gw0, 1, lr);
    }  // implicit barrier: the next batch may start
}

EpochResult Trainer::run_epoch(const int64_t* order, int64_t n_order, const ProgressHook* hook) {
    EpochResult res;
    if (n_order <= 0) return res;
    prepare_buffers(order, n_order);
    std::fill(loss_.begin(), loss_.end(), 0.0);
    const int64_t bs = std::max(cfg_.batch_size, 1);
    using clock = std::chrono::steady_clock;
    auto last_call = clock::now();
    bool stop = false, diverged = false;
    int64_t rows_done = 0;

#pragma omp parallel num_threads(n_threads_)
    {
        FlushDenormals ftz;
        for (int64_t b0 = 0; b0 < n_order; b0 += bs) {
            const int64_t nb = std::min(bs, n_order - b0);
#pragma omp single
            batch_setup(order + b0, nb);
            batch_compute(order + b0, nb, /*use_dropout=*/true);
#pragma omp single
            {
                // A non-finite loss means the model diverged: stop before this batch's update touches it.
                double loss = 0.0;
                for (double l : loss_) loss += l;
                if (!std::isfinite(loss)) {
                    diverged = true;
                    rows_done = b0;
                }
            }  // implicit barrier: every thread sees `diverged`
            if (diverged) break;
            batch_update();
            if (hook && hook->callback) {
                // The calling thread (the team's master) reports progress; every thread then reads its verdict.
#pragma omp master
                {
                    rows_done = b0 + nb;
                    const auto now = clock::now();
                    if (std::chrono::duration<double>(now - last_call).count() >= hook->interval_seconds) {
                        last_call = now;
                        if (!hook->callback(rows_done)) stop = true;
                    }
                }
#pragma omp barrier
                if (stop) break;
            }
        }
    }
    for (double l : loss_) res.loss_sum += l;
    res.n_rows = (stop || diverged) ? rows_done : n_order;
    res.n_batches = (res.n_rows + bs - 1) / bs;
    res.stopped = stop || diverged;
    res.diverged = diverged;
    return res;
}

void Trainer::batch_gradients(const int64_t* rows, int64_t nb, bool use_dropout, BatchGradients& out) {
    const int k = m_.k;
    const int64_t saved_bs = cfg_.batch_size;
    cfg_.batch_size = static_cast<int>(std::max<int64_t>(nb, 1));
    prepare_buffers(rows, nb);
    std::fill(loss_.begin(), loss_.end(), 0.0);
#pragma omp parallel num_threads(n_threads_)
    {
        FlushDenormals ftz;
#pragma omp single
        batch_setup(rows, nb);
        batch_compute(rows, nb, use_dropout);
    }
    cfg_.batch_size = static_cast<int>(saved_bs);

    double obj = 0.0;
    for (double l : loss_) obj += l;
    double regW = 0.0, regV = 0.0;
    for (int64_t e = 0; e < static_cast<int64_t>(m_.t) * k; ++e) regW += static_cast<double>(m_.W[e]) * m_.W[e];
    out.touched.assign(touched_.begin(), touched_.begin() + n_touched_);
    for (feature_t f : out.touched) {
        const float* v = m_.V + static_cast<int64_t>(f) * k;
        for (int f2 = 0; f2 < k; ++f2) regV += static_cast<double>(v[f2]) * v[f2];
        regV += static_cast<double>(m_.w[f]) * m_.w[f];
        slot_of_feature_[f] = -1;
    }
    out.objective = obj + 0.5 * cfg_.attention_l2 * regW + 0.5 * cfg_.l2 * regV;
    out.dense = total_;
    out.dV.assign(dV_touched_.begin(), dV_touched_.begin() + n_touched_ * k);
    out.dw.assign(dw_touched_.begin(), dw_touched_.begin() + n_touched_);
}

}  // namespace afm
