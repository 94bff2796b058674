#include "afm/trainer.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <stdexcept>

#include "afm/rng.hpp"
#include "afm/team_clock.hpp"

namespace afm {

void DenseGrad::resize(int k_, int t_, int64_t nR_, int64_t nS_) {
    k = k_;
    t = t_;
    nR = nR_;
    nS = nS_;
    data.assign(static_cast<size_t>(t) * k + 2 * static_cast<size_t>(t) + k + static_cast<size_t>(nR + nS), 0.0f);
    w0 = 0.0;
}

namespace {
// Test knob (set_pair_tile): when > 0, the pair tile and the long-row threshold, in pairs.
std::atomic<int64_t> g_pair_tile{0};
}  // namespace

int64_t set_pair_tile(int64_t pairs) { return g_pair_tile.exchange(pairs > 0 ? pairs : 0); }

int64_t block_pair_target(int k, int t) {
    if (const int64_t forced = g_pair_tile.load(std::memory_order_relaxed)) return forced;
    // Bytes of E and Z tiles per block; FASTAFM_BLOCK_BYTES overrides it (tuning and tests).
    static const int64_t budget = [] {
        const char* env = std::getenv("FASTAFM_BLOCK_BYTES");
        const long long v = env ? std::atoll(env) : 0;
        return v > 0 ? static_cast<int64_t>(v) : int64_t{256 * 1024};
    }();
    const int64_t per_pair = 4 * static_cast<int64_t>(k + t);
    return std::max<int64_t>(budget / per_pair, 1);
}

int64_t long_row_pairs(int k, int t) {
    if (const int64_t forced = g_pair_tile.load(std::memory_order_relaxed)) return forced;
    // A row up to 8 MiB of E and Z rows (16,384 pairs, 181 non-zeros at k = t = 64; Criteo's 741 pairs are far
    // below) still runs as one block, as before streaming existed: no second pass for common row lengths.
    constexpr int64_t kLongRowBytes = int64_t{8} << 20;
    return std::max(block_pair_target(k, t), kLongRowBytes / (4 * static_cast<int64_t>(k + t)));
}

double row_loss(Loss loss, float y_pred, float label, float* grad) {
    if (loss == Loss::squared) {
        const double r = static_cast<double>(y_pred) - label;
        *grad = static_cast<float>(r);
        return 0.5 * r * r;
    }
    if (label != 1.0f && label != -1.0f) {
        // A rate target (aggregated rows): t = 2c - 1 in (-1, 1), c the positive rate in (0, 1);
        // l = -(c log s(y) + (1 - c) log(1 - s(y))) = softplus(y) - c y;  dl/dy = sigmoid(y) - c.
        // The labels +1 / -1 keep the expressions below, bit for bit (c = 1, 0 there).
        const double c = 0.5 * (1.0 + static_cast<double>(label));
        const double y = y_pred;
        const double softplus_y = std::max(y, 0.0) + std::log1p(std::exp(-std::abs(y)));
        const double sig_y = y >= 0 ? 1.0 / (1.0 + std::exp(-y)) : std::exp(y) / (1.0 + std::exp(y));
        *grad = static_cast<float>(sig_y - c);
        return softplus_y - c * y;
    }
    // logistic: l = log(1 + exp(-t y)) = softplus(-t y);  dl/dy = -t * sigmoid(-t y)
    const double z = -static_cast<double>(label) * y_pred;
    const double softplus = std::max(z, 0.0) + std::log1p(std::exp(-std::abs(z)));
    const double sig = z >= 0 ? 1.0 / (1.0 + std::exp(-z)) : std::exp(z) / (1.0 + std::exp(z));
    *grad = static_cast<float>(-label * sig);
    return softplus;
}

namespace {
// A hint to fetch the cache lines of bytes [p, p + n), to be written (Write = 1) or only read (0; rows of X) (no-op
// where the compiler has no builtin): the rows a batch updates are scattered over arrays far larger than L2 at
// Criteo's feature counts, so each one's first use waited for memory. Hints change no value. (Hints for
// batch_slots' lookups measured no gain: that array, 4 bytes a feature, stays in L2.)
template <int Write>
inline void prefetch_lines(const void* p, int64_t n) {
#if defined(__GNUC__) || defined(__clang__)
    const uintptr_t first = reinterpret_cast<uintptr_t>(p) & ~uintptr_t{63};
    const uintptr_t last = reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(n) - 1;
    for (uintptr_t a = first; a <= last; a += 64) __builtin_prefetch(reinterpret_cast<const void*>(a), Write, 3);
#else
    (void)p;
    (void)n;
#endif
}

inline void prefetch_bytes(const void* p, int64_t n) { prefetch_lines<1>(p, n); }
inline void prefetch_read(const void* p, int64_t n) { prefetch_lines<0>(p, n); }

// Floats between two threads' sparse_tmp_ rows: k rounded up to whole cache lines, plus one line.
int64_t padded_row(int k) { return (static_cast<int64_t>(k) + 15) / 16 * 16 + 16; }
}  // namespace

int64_t block_pair_cap(int64_t max_row_nnz, int k, int t, bool attention) {
    if (!attention) return 1;
    return std::max(block_pair_target(k, t), std::min(pair_count(max_row_nnz), long_row_pairs(k, t)));
}

int64_t block_scratch_bytes(int64_t max_row_nnz, int k, int t, int n_threads, bool attention) {
    // What BlockScratch::reserve allocates per thread (pair tiles, per-row and per-non-zero buffers).
    const int64_t pairs = block_pair_cap(max_row_nnz, k, t, attention);
    const int64_t tile = std::min(pairs, block_pair_target(k, t));
    const int64_t nnz = attention ? max_row_nnz : 1;  // uniform pooling keeps nothing per non-zero
    const int64_t per_thread = BlockScratch::sizes(pairs, tile, kMaxBlockRows, nnz, k, t).bytes();
    return static_cast<int64_t>(std::max(n_threads, 1)) * per_thread;
}

namespace {
// The set of a trainer's blocks: bf16 mode's (every block), or the dispatch's for rows-layout or pairs-major blocks.
const IsaKernels& training_kernels(const TrainConfig& cfg, int k, int t, bool pairs_major) {
    if (cfg.bf16) {
        const IsaKernels* bf16 = bf16_kernels();
        if (!bf16) throw std::invalid_argument(kBf16Missing);
        return *bf16;
    }
    return pairs_major ? pairs_major_kernels_for(k, t) : kernels_for(k, t);
}
}  // namespace

Trainer::Trainer(const ModelView& model, const OptimizerState& opt, const TrainConfig& cfg)
    : m_(model), opt_(opt), cfg_(cfg), isa_(training_kernels(cfg, model.k, model.t, false)),
      pm_isa_(training_kernels(cfg, model.k, model.t, true)), optimizer_(optimizer_spec(opt.kind)),
      update_(isa_.update_of(opt.kind)), n_threads_(resolve_threads(cfg.n_threads)) {
    const int k = m_.k, t = m_.t;
    const int64_t FF = static_cast<int64_t>(m_.n_fields) * m_.n_fields;
    const int64_t nR = m_.R ? FF : 0, nS = m_.S ? FF : 0;
    dense_size_ = static_cast<int64_t>(t) * k + 2 * t + k + nR + nS;
    packed_.resize(k, t);
    scratch_.resize(n_threads_);
    sparse_tmp_.assign(static_cast<size_t>(n_threads_ * padded_row(k)), 0.0f);
    n_chunks_max_ = kChunksPerThread * n_threads_;
    thread_cpu_.resize(n_threads_);
    dense_.resize(n_chunks_max_);
    for (DenseGrad& d : dense_) d.resize(k, t, nR, nS);
    loss_.assign(n_chunks_max_, 0.0);
    total_.resize(k, t, nR, nS);
    slot_of_feature_.assign(static_cast<size_t>(m_.n_features), -1);
    // FASTAFM_TEAM_MODE (team_clock.hpp): "alternate" switches between the team and thread 0 alone every batch
    // (tests: the result must not change), "team" never goes solo (measurements); unset: adaptive (choose_mode).
    force_mode_ = team::mode_from_env();
}

void Trainer::use_rows(const CsrView& X, const float* y, const float* weights) {
    X_ = X;
    y_ = y;
    w_ = weights;
    int64_t max_nnz = 0;
    if (cfg_.attention || m_.field_weighted())  // FM's uniform pooling keeps nothing per non-zero
        for (int64_t r = 0; r < X_.n_rows; ++r) max_nnz = std::max(max_nnz, X_.indptr[r + 1] - X_.indptr[r]);
    // The blocks are cut at this call's own cap (so a block's rows, and every sum, do not depend on rows seen
    // in earlier calls); the tiles are re-reserved only when they must grow.
    const int64_t pair_cap = block_pair_cap(max_nnz, m_.k, m_.t, cfg_.attention);
    const int64_t tile = std::min(pair_cap, block_pair_target(m_.k, m_.t));
    const bool grow = pair_cap > reserved_pairs_ || max_nnz > reserved_nnz_ || tile < reserved_tile_;
    reserved_pairs_ = std::max(reserved_pairs_, pair_cap);
    reserved_nnz_ = std::max(reserved_nnz_, max_nnz);
    reserved_tile_ = std::min(reserved_tile_, tile);
    for (BlockScratch& sc : scratch_) {
        if (grow) sc.reserve(reserved_pairs_, reserved_tile_, kMaxBlockRows, reserved_nnz_, m_.k, m_.t);
        sc.pair_cap = pair_cap;
        sc.tile_pairs = tile;
        sc.pair_dots = true;  // backward follows every forward here
        // Field-aware AFM and bf16 run the rows layout only (isa/field_attention.inc, isa/gemm_bf16.inc).
        const bool fa = cfg_.attention && m_.field_aware();
        sc.pairs_major_from = (fa || cfg_.bf16) ? -1 : pairs_major_from(pm_isa_, m_.k, m_.t);
        if (m_.field_weighted() && !cfg_.attention) sc.reserve_fields(reserved_nnz_, m_.k, m_.n_fields);
        if (fa) sc.reserve_pair_fields(reserved_pairs_);
        // bf16 copies for blocks of up to a block budget of pairs (a longer row, alone in its block, packs).
        if (cfg_.bf16 && cfg_.attention) sc.reserve_bf16(std::min(pair_cap, block_pair_target(m_.k, m_.t)), m_.k, m_.t);
    }
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
    }
    nz_offset_.resize(static_cast<size_t>(std::min(bs, std::max<int64_t>(n_order, 1))) + 1);
}

void Trainer::batch_offsets(const int64_t* rows, int64_t nb) {
    // Non-zero offsets of each row inside the batch (where its per-non-zero gradients go), the chunks, packed W.
    nz_offset_[0] = 0;
    for (int64_t i = 0; i < nb; ++i) nz_offset_[i + 1] = nz_offset_[i] + X_.indptr[rows[i] + 1] - X_.indptr[rows[i]];
    n_chunks_ = static_cast<int>(std::min<int64_t>(nb, n_chunks_max_));
    if (cfg_.attention) packed_.pack(isa_, m_);  // W as the chunks' GEMMs read it
}

void Trainer::batch_slots(const int64_t* rows, int64_t nb) {
    // A slot per distinct feature of the batch, and its non-zero positions grouped by slot in row order.
    // The batch's rows are scattered over X and, on one thread, this is their first read in the batch
    // (chunk_compute's come after it): their offsets, indices and slot lookups waited for memory. Hints ahead, in three
    // stages (offsets, then the indices they locate, then the slot entries those name); they change no value.
    constexpr int64_t kOffsetsAhead = 16, kIndicesAhead = 8, kLookupsAhead = 2;
    for (int64_t i = 0; i < std::min(nb, kOffsetsAhead); ++i) prefetch_read(X_.indptr + rows[i], 2 * sizeof(int64_t));
    const auto indices_of = [&](int64_t i, int64_t* lo, int64_t* n) {
        *lo = X_.indptr[rows[i]];
        *n = X_.indptr[rows[i] + 1] - *lo;
    };
    for (int64_t i = 0; i < std::min(nb, kIndicesAhead); ++i) {
        int64_t lo, n;
        indices_of(i, &lo, &n);
        prefetch_read(X_.indices + lo, n * static_cast<int64_t>(sizeof(feature_t)));
    }
    int64_t pos = 0;
    n_touched_ = 0;
    for (int64_t i = 0; i < nb; ++i) {
        if (i + kOffsetsAhead < nb) prefetch_read(X_.indptr + rows[i + kOffsetsAhead], 2 * sizeof(int64_t));
        if (i + kIndicesAhead < nb) {
            int64_t lo, n;
            indices_of(i + kIndicesAhead, &lo, &n);
            prefetch_read(X_.indices + lo, n * static_cast<int64_t>(sizeof(feature_t)));
        }
        if (i + kLookupsAhead < nb) {
            int64_t lo, n;
            indices_of(i + kLookupsAhead, &lo, &n);
            for (int64_t j = lo; j < lo + n; ++j) __builtin_prefetch(slot_of_feature_.data() + X_.indices[j], 1, 3);
        }
        const int64_t lo = X_.indptr[rows[i]], hi = X_.indptr[rows[i] + 1];
        if (w_ && w_[rows[i]] == 0.0f) {  // a weight-0 row is not in T(B): no slot, no L2, as if left out
            for (int64_t j = lo; j < hi; ++j, ++pos) nz_slot_[pos] = -1;
            continue;
        }
        for (int64_t j = lo; j < hi; ++j, ++pos) {
            const feature_t f = X_.indices[j];
            int32_t slot = slot_of_feature_[f];
            if (slot < 0) {
                slot = static_cast<int32_t>(n_touched_++);
                slot_of_feature_[f] = slot;
                touched_[slot] = f;
                slot_ptr_[slot + 1] = 0;
            }
            nz_slot_[pos] = slot;
            ++slot_ptr_[slot + 1];  // counted here: no second pass over the non-zeros
        }
    }
    // Counting sort, stable: row order kept within a feature.
    slot_ptr_[0] = 0;
    for (int64_t s = 0; s < n_touched_; ++s) slot_ptr_[s + 1] += slot_ptr_[s];
    for (int64_t j = 0; j < pos; ++j)
        if (nz_slot_[j] >= 0) slot_nz_[slot_ptr_[nz_slot_[j]]++] = j;
    for (int64_t s = n_touched_; s > 0; --s) slot_ptr_[s] = slot_ptr_[s - 1];
    slot_ptr_[0] = 0;
}

void Trainer::chunk_compute(const int64_t* rows, int64_t nb, int c, bool use_dropout) {
    const int k = m_.k;
    BlockScratch& sc = scratch_[thread_id()];
    DenseGrad& dg = dense_[c];
    std::fill(dg.data.begin(), dg.data.end(), 0.0f);
    dg.w0 = 0.0;
    const bool drop = use_dropout && cfg_.dropout > 0.0f;
    double loss_sum = 0.0;
    // The chunk's rows, walked in blocks of whole rows that fit the scratch tiles.
    const int64_t lo = nb * c / n_chunks_, hi = nb * (c + 1) / n_chunks_;
    // The epoch's order scatters the rows over X: the first reads of a row (its offsets, then its indices and
    // values in the forward's linear term) waited for memory. Fetched ahead: every offset of the chunk now, each
    // block's rows while the block before it runs. Hints change no value.
    for (int64_t i = lo; i < hi; ++i) prefetch_read(X_.indptr + rows[i], 2 * sizeof(int64_t));
    const auto prefetch_rows = [&](int64_t from, int64_t to) {
        for (int64_t i = from; i < to; ++i) {
            const int64_t start = X_.indptr[rows[i]], nnz = X_.indptr[rows[i] + 1] - start;
            if (nnz <= 0) continue;
            prefetch_read(X_.indices + start, nnz * static_cast<int64_t>(sizeof(feature_t)));
            prefetch_read(X_.values + start, nnz * static_cast<int64_t>(sizeof(float)));
            prefetch_read(y_ + rows[i], sizeof(float));
        }
    };
    BlockRows block;
    block.has_mask = drop;
    for (int64_t i = lo; i < hi;) {
        if (i == lo) prefetch_rows(lo, std::min(hi, lo + 8));
        block.n = 0;
        int64_t pairs = 0;
        BlockLayoutCut layout;
        while (i < hi && block.n < sc.row_cap) {
            const int64_t row = rows[i];
            const int64_t start = X_.indptr[row], nnz = X_.indptr[row + 1] - start;
            const int64_t P = cfg_.attention ? pair_count(nnz) : 0;
            if (block.n > 0 && pairs + P > sc.pair_cap) break;
            if (layout.cut_before(sc, P)) break;
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
        prefetch_rows(i, std::min(hi, i + std::max(block.n, 1)));  // the next block's rows, about
        const IsaKernels& bk = layout.pairs_major_block(sc, pairs) ? pm_isa_ : isa_;  // its layout's set
        bk.forward(m_, packed_, cfg_.attention, block, sc);
        const int64_t first = i - block.n;
        for (int r = 0; r < block.n; ++r) {
            const int64_t row = rows[first + r];
            const double l = row_loss(cfg_.loss, sc.y[r], y_[row], &sc.g[r]);
            if (w_) {  // the row's loss, and so every gradient of it (all scale with g), times its weight
                loss_sum += static_cast<double>(w_[row]) * l;
                sc.g[r] *= w_[row];
            } else {
                loss_sum += l;
            }
        }
        bk.backward(m_, packed_, cfg_.attention, block, sc, dg.view());
    }
    // The kernels sum R's and S's gradients in their upper triangles: the lower ones mirror them.
    for (float* dR : {dg.view().R, dg.view().S}) {
        if (!dR) continue;
        const int64_t F = m_.n_fields;
        for (int64_t a = 0; a < F; ++a)
            for (int64_t b = a + 1; b < F; ++b) dR[b * F + a] = dR[a * F + b];
    }
    loss_[c] = loss_sum;
}

// Called by every active thread (all of the team, or thread 0 alone in solo mode). No OpenMP worksharing
// construct is used inside the batch loop: in solo mode the other threads skip batches, and OpenMP requires
// every thread of a team to meet the same sequence of them. Work is claimed from atomic counters instead.
void Trainer::batch_compute(const int64_t* rows, int64_t nb, bool use_dropout) {
    const int tid = thread_id();
    if (tid == 0) {
        next_chunk_.store(0, std::memory_order_relaxed);
        next_slice_.store(0, std::memory_order_relaxed);
        next_touched_.store(0, std::memory_order_relaxed);
        next_wrow_.store(0, std::memory_order_relaxed);
        slots_claimed_.store(false, std::memory_order_relaxed);
        batch_offsets(rows, nb);
    }
    team_wait();
    // The feature slots are needed only after the chunks. A team: the first thread out of chunks builds them while
    // the others finish theirs (built first by one thread, the others waited ~6% of a batch for it at the
    // barrier: bench/RESULTS.md, 2 threads 1.00-1.04x); alone: first, its reads of the rows warm the chunks'
    // (1.6% faster than last). Whichever thread builds them, the slots are the same.
    const bool team = barrier_.size() > 1;
    if (!team) batch_slots(rows, nb);
    for (int64_t c; (c = next_chunk_.fetch_add(1, std::memory_order_relaxed)) < n_chunks_;)
        chunk_compute(rows, nb, static_cast<int>(c), use_dropout);
    if (team && !slots_claimed_.exchange(true, std::memory_order_relaxed)) batch_slots(rows, nb);
    team_wait();

    // Dense gradients: the chunks' buffers summed in chunk order (+ L2 on W), in slices of elements.
    constexpr int64_t kSlice = 1024;
    const int64_t n_slices = (dense_size_ + kSlice - 1) / kSlice;
    const int64_t nW = cfg_.attention_l2 > 0.0f ? static_cast<int64_t>(m_.t) * m_.k : 0;
    float* tot = total_.data.data();
    // Claimed, like every phase of a batch: a thread descheduled by another job holds back at most one slice.
    for (int64_t sl; (sl = next_slice_.fetch_add(1, std::memory_order_relaxed)) < n_slices;) {
        const int64_t e0 = sl * kSlice, e1 = std::min(dense_size_, e0 + kSlice);
        std::fill(tot + e0, tot + e1, 0.0f);
        for (int c = 0; c < n_chunks_; ++c) {
            const float* src = dense_[c].data.data();
#pragma omp simd
            for (int64_t e = e0; e < e1; ++e) tot[e] += src[e];
        }
        const float l2 = cfg_.attention_l2;
        for (int64_t e = e0; e < std::min(e1, nW); ++e) tot[e] += l2 * m_.W[e];
    }
}

// One thread, after batch_compute's chunks: the batch's loss and w0 gradient, in chunk order.
static double sum_chunks(const std::vector<double>& loss, const std::vector<DenseGrad>& dense, int n, DenseGrad& total) {
    double l = 0.0, w0 = 0.0;
    for (int c = 0; c < n; ++c) {
        l += loss[c];
        w0 += dense[c].w0;
    }
    total.w0 = w0;
    return l;
}

void Trainer::prefetch_slot(int64_t s) const {
    // The touched rows are scattered over the model (V, w and their optimizer slots, far larger than L2 at
    // Criteo's feature counts): each row's first use waited for memory. Fetching them kSlotsAhead slots early
    // overlaps those waits; nothing is computed. (The slot's per-non-zero gradients, the batch's dV rows, were
    // fetched too: they are mostly in L2 after the backward, and walking the slot's list for the hints cost more
    // than it saved, 1.04x Criteo k = 10 without it.)
    if (s >= n_touched_) return;
    const int64_t k = m_.k, f = touched_[s];
    const int64_t row = k * static_cast<int64_t>(sizeof(float));
    prefetch_bytes(m_.V + f * k, row);
    prefetch_bytes(m_.w + f, 4);
    if (optimizer_.has_step_counts()) prefetch_bytes(opt_.row_step + f, 4);
    for (int i = 0; i < optimizer_.n_slots; ++i) {
        prefetch_bytes(opt_.slot[i].V + f * k, row);
        prefetch_bytes(opt_.slot[i].w + f, 4);
    }
}

void Trainer::sparse_gradient(int64_t s, float* dv, float* dw_out) const {
    const int k = m_.k;
    const feature_t f = touched_[s];
    float dw = 0.0f;
    std::fill(dv, dv + k, 0.0f);
    for (int64_t j = slot_ptr_[s]; j < slot_ptr_[s + 1]; ++j) {
        const int64_t nz = slot_nz_[j];
        const float* src = dV_nz_.data() + nz * k;
#pragma omp simd
        for (int f2 = 0; f2 < k; ++f2) dv[f2] += src[f2];
        dw += dw_nz_[nz];
    }
    const float l2 = l2_of_slot(s);
    if (l2 > 0.0f) {
        const float* v = m_.V + static_cast<int64_t>(f) * k;
        for (int f2 = 0; f2 < k; ++f2) dv[f2] += l2 * v[f2];
        dw += l2 * m_.w[f];
    }
    *dw_out = dw;
}

float Trainer::l2_of_slot(int64_t s) const {
    if (cfg_.frequency_l2 <= 0.0f || !counts_) return cfg_.l2;
    // c_iB / n_i^2 per batch sums to 1 / n_i over an epoch; n_i < c_iB (counts of other rows) is clamped.
    const float c = static_cast<float>(slot_ptr_[s + 1] - slot_ptr_[s]);
    const float n = std::max(counts_[touched_[s]], c);
    return cfg_.l2 + cfg_.frequency_l2 * (c / n) / n;
}

void Trainer::step(float* ModelView::*param, int64_t off, const float* grad, int64_t n, const UpdateStep& s) const {
    float* slot[kMaxOptimizerSlots] = {};
    for (int i = 0; i < optimizer_.n_slots; ++i) slot[i] = opt_.slot[i].*param + off;
    update_(m_.*param + off, slot, grad, n, s);
}

void Trainer::batch_update() {
    const int k = m_.k, t = m_.t;
    // The same coefficients at every step, or (an optimizer that counts steps, Adam) those at the values' next
    // step count: the dense parameters' (written back by thread 0 after the barrier) and each touched row's.
    const bool counted = optimizer_.has_step_counts();
    const UpdateStep fixed{cfg_.learning_rate};
    const UpdateStep dense = counted ? optimizer_.at_step(cfg_, *opt_.dense_step + 1.0f) : fixed;
    // Touched rows of V and w: each row's gradient is summed and applied at once (dynamic: rows of frequent
    // features sum many non-zeros).
    float* dv = sparse_tmp_.data() + thread_id() * padded_row(k);
    // A thread holds its next claim while it works on the current one, so that the hints kSlotsAhead slots on
    // reach into the slots it will update itself: with the other threads' claims between, "s + kSlotsAhead" at a
    // claim's end fetched rows another thread was updating, and the first slots of every claim waited for memory.
    constexpr int64_t kTouchedPerClaim = 16;
    static_assert(kSlotsAhead <= kTouchedPerClaim, "the hints reach into the next claim only");
    const auto claim = [this] { return next_touched_.fetch_add(kTouchedPerClaim, std::memory_order_relaxed); };
    for (int64_t s0 = claim(), s1 = claim(); s0 < n_touched_; s0 = s1, s1 = claim())
    for (int64_t s = s0, end = std::min(n_touched_, s0 + kTouchedPerClaim); s < end; ++s) {
        const int64_t ahead = s + kSlotsAhead;
        prefetch_slot(ahead < end ? ahead : s1 + (ahead - end));
        const int64_t f = touched_[s];
        float dw;
        sparse_gradient(s, dv, &dw);
        UpdateStep row = fixed;
        if (counted) {  // lazy: the row's own step count, advanced only when a batch touches the row
            const float steps = opt_.row_step[f] + 1.0f;
            opt_.row_step[f] = steps;
            row = optimizer_.at_step(cfg_, steps);
        }
        step(&ModelView::V, f * k, dv, k, row);
        step(&ModelView::w, f, &dw, 1, row);
        slot_of_feature_[f] = -1;
    }
    // Dense parameters, in row blocks of W so that threads share the largest array.
    constexpr int kRowsPerClaim = 8;
    for (int j0; (j0 = next_wrow_.fetch_add(kRowsPerClaim, std::memory_order_relaxed)) < t;)
    for (int j = j0; j < std::min(t, j0 + kRowsPerClaim); ++j) {
        const int64_t off = static_cast<int64_t>(j) * k;
        step(&ModelView::W, off, total_.W() + off, k, dense);
    }
    if (thread_id() == 0) {
        step(&ModelView::b, 0, total_.b(), t, dense);
        step(&ModelView::h, 0, total_.h(), t, dense);
        if (cfg_.learn_projection) step(&ModelView::p, 0, total_.p(), k, dense);
        if (m_.R) step(&ModelView::R, 0, total_.R(), static_cast<int64_t>(m_.n_fields) * m_.n_fields, dense);
        if (m_.S) step(&ModelView::S, 0, total_.S(), static_cast<int64_t>(m_.n_fields) * m_.n_fields, dense);
        const float gw0 = static_cast<float>(total_.w0);
        step(&ModelView::w0, 0, &gw0, 1, dense);
    }
    team_wait();
    // Read by every thread above, and next only in the next batch's update (after its barriers).
    if (counted && thread_id() == 0) *opt_.dense_step += 1.0f;
}

// Thread 0, at the end of a batch (before the team's last barrier of the batch): whether the next batches
// run on the whole team or on thread 0 alone. Any thread may run any chunk, and the chunks and their sums are
// the same either way, so the result does not depend on the mode. The cores are judged shared with other jobs
// (contended) when, over the last kWindow batches, some thread sat at the barriers for over a third of the
// time (a team thread is descheduled), or the team's threads together got under kMinCpuShare of their cores
// (the scheduler stacked them on one core, beside a busy one: no barrier shows that). Solo mode then lasts
// solo_len_ batches, doubled each time a probe with the team fails. A probe (the team after solo batches, and
// the start of every epoch) is judged on kProbe batches, not kWindow: each team batch under contention costs
// about twice a solo one, and the longer window made the probes most of what 2 threads lost against 1
// (bench/RESULTS.md, contention).
void Trainer::choose_mode(double batch_start, double batch_seconds) {
    constexpr int kWindow = 8, kProbe = 2;
    // The team's threads together ran less than this share of the window's wall time x team size: they share
    // their cores with other jobs even if no barrier shows it (the scheduler stacked them on the free core).
    constexpr double kMinCpuShare = 0.7;
    if (barrier_.size() <= 1 && !solo_) return;  // one thread
    if (force_mode_ == team::Mode::alternate) {  // FASTAFM_TEAM_MODE=alternate (tests): switch every batch
        solo_next_ = !solo_;
        return;
    }
    if (solo_) {
        solo_next_ = --solo_left_ > 0;
        if (!solo_next_) probing_ = true;
        return;
    }
    const auto team_cpu = [&] {
        double sum = 0.0;
        for (int i = 0; i < team_; ++i) sum += thread_cpu_[i].seconds;
        return sum;
    };
    if (window_n_ == 0) {
        window_start_ = batch_start;
        window_cpu_ = team_cpu();
    }
    window_time_ += batch_seconds;
    // The batch's barrier spreads: how long some thread waited, whichever was late. (Thread 0's own waits
    // missed the case where thread 0 shares its core with another job: the others waited for it, it never
    // waited, and the team stayed on at 0.80x one thread; bench/RESULTS.md, contention.)
    window_wait_ += barrier_.spread_seconds() - spread_at_batch_;
    if (++window_n_ < (probing_ ? kProbe : kWindow)) return;
    const double span = batch_start - window_start_, cpu = team_cpu() - window_cpu_;
    const bool starved = span > 0.0 && window_cpu_ >= 0.0 && cpu < kMinCpuShare * team_ * span;
    const bool contended = window_wait_ > window_time_ / 3 || starved;
    window_n_ = 0;
    window_time_ = window_wait_ = 0.0;
    probing_ = false;
    if (force_mode_ == team::Mode::team) return;  // FASTAFM_TEAM_MODE=team
    contended_ = contended;
    if (contended) {
        solo_next_ = true;
        solo_left_ = solo_len_;
        solo_len_ = std::min(solo_len_ * 2, 1024);
    } else {
        solo_len_ = 32;
    }
}

EpochResult Trainer::run_epoch(const CsrView& X, const float* y, const float* weights, const int64_t* order,
                               int64_t n_order, const ProgressHook* hook) {
    EpochResult res;
    if (n_order <= 0) return res;
    use_rows(X, y, weights);
    prepare_buffers(order, n_order);
    const int64_t bs = std::max(cfg_.batch_size, 1);
    using clock = std::chrono::steady_clock;
    auto last_call = clock::now();
    bool stop = false, diverged = false;
    std::exception_ptr hook_error;  // what the progress hook threw (thread 0 only)
    int64_t rows_done = 0;
    double epoch_loss = 0.0;

#pragma omp parallel num_threads(n_threads_)
    {
        FlushDenormals ftz;
        const int tid = thread_id();
#pragma omp single
        {
            team_ = team_size();
            barrier_.reset(team_);
            solo_ = solo_next_ = false;
            exit_.store(false, std::memory_order_relaxed);  // before the single's barrier
            probing_ = true;  // every epoch starts with a probe: judged on kProbe batches
            if (!contended_) solo_len_ = 32;
            window_n_ = 0;
            window_time_ = window_wait_ = 0.0;
            gate_.open();
        }
        int64_t b0 = 0;
        unsigned gate_seen = gate_.generation();
        for (;;) {
            if (tid != 0) {  // solo mode: sleep until thread 0 needs the team again
                gate_.wait_open();
                // The generation before exit_: thread 0 sets exit_ and then opens the gate, so an opening seen
                // here is the exit's, or one before it. (Read the other way round, a thread that passed its
                // last batch could read exit_ false, then see the exit's opening as a resume and start a batch
                // at a stale resume_b0_ that thread 0 never ran: a hang at the end of an epoch, caught by the
                // sanitizer build's timing in tests/test_kernels.py.)
                const unsigned g = gate_.generation();
                if (exit_.load(std::memory_order_seq_cst)) break;
                // The gate was closed and opened since this thread last looked: it missed the solo batches
                // (it may even have found the gate open again, if it was slow to get here).
                if (g != gate_seen) {
                    gate_seen = g;
                    b0 = resume_b0_;
                }
            }
            if (b0 >= n_order) break;
            const auto batch_start = clock::now();
            // Read by choose_mode only for a team: a syscall per batch saved where one thread trains alone.
            if (team_ > 1) thread_cpu_[tid].seconds = team::thread_cpu_seconds();
            if (tid == 0) spread_at_batch_ = barrier_.spread_seconds();
            const int64_t nb = std::min(bs, n_order - b0);
            batch_compute(order + b0, nb, /*use_dropout=*/true);
            if (tid == 0) {
                // A non-finite loss means the model diverged: stop before this batch's update touches it.
                const double loss = sum_chunks(loss_, dense_, n_chunks_, total_);
                epoch_loss += loss;
                if (!std::isfinite(loss)) {
                    diverged = true;
                    rows_done = b0;
                    // batch_update resets the batch's slots; skipped, they must be reset here, or the next call of
                    // this Trainer (a Dask worker's next round) would find stale slots of features it never saw.
                    for (int64_t s = 0; s < n_touched_; ++s) slot_of_feature_[touched_[s]] = -1;
                }
            }
            team_wait();  // every thread sees `diverged`, and total_ is complete
            if (diverged) break;
            if (tid == 0)
                choose_mode(std::chrono::duration<double>(batch_start.time_since_epoch()).count(),
                            std::chrono::duration<double>(clock::now() - batch_start).count());
            if (tid == 0 && solo_next_ && !solo_) gate_.close();  // before the batch's last barrier
            batch_update();
            if (hook && hook->callback) {
                // The calling thread (the team's master) reports progress; every thread then reads its verdict.
                if (tid == 0) {
                    rows_done = b0 + nb;
                    const auto now = clock::now();
                    if (std::chrono::duration<double>(now - last_call).count() >= hook->interval_seconds) {
                        last_call = now;
                        // The caller's code runs in the caller's floating-point mode, and nothing it throws
                        // may cross the parallel region (std::terminate): it stops the epoch, and is
                        // rethrown once the team has left the region.
                        try {
                            FlushDenormals::Paused caller_mode(ftz);
                            if (!hook->callback(rows_done)) stop = true;
                        } catch (...) {
                            hook_error = std::current_exception();
                            stop = true;
                        }
                    }
                }
                team_wait();
                if (stop) break;
            }
            b0 += bs;
            if (tid == 0 && solo_next_ != solo_) {  // the others passed the last barrier (or sleep)
                solo_ = solo_next_;
                if (solo_) {
                    barrier_.reset(1);
                } else {
                    barrier_.reset(team_);
                    resume_b0_ = b0;
                    gate_.open();
                }
            }
        }
        if (tid == 0) {  // wake the team if it sleeps, to leave the parallel region
            exit_.store(true, std::memory_order_seq_cst);
            gate_.open();
        }
    }
    if (hook_error) std::rethrow_exception(hook_error);
    res.loss_sum = epoch_loss;
    res.n_rows = (stop || diverged) ? rows_done : n_order;
    res.n_batches = (res.n_rows + bs - 1) / bs;
    res.stopped = stop || diverged;
    res.diverged = diverged;
    return res;
}

void Trainer::batch_gradients(const CsrView& X, const float* y, const float* weights, const int64_t* rows, int64_t nb,
                              bool use_dropout, BatchGradients& out) {
    const int k = m_.k;
    use_rows(X, y, weights);
    const int64_t saved_bs = cfg_.batch_size;
    cfg_.batch_size = static_cast<int>(std::max<int64_t>(nb, 1));
    prepare_buffers(rows, nb);
#pragma omp parallel num_threads(n_threads_)
    {
        FlushDenormals ftz;
#pragma omp single
        barrier_.reset(team_size());
        batch_compute(rows, nb, use_dropout);
        team_wait();  // the reduction's slices are claimed: all done before the sums below
    }
    cfg_.batch_size = static_cast<int>(saved_bs);

    const double obj = sum_chunks(loss_, dense_, n_chunks_, total_);
    double regW = 0.0, regV = 0.0;  // regV: sum over touched ids of l2_of_slot * (||V[i]||^2 + w[i]^2)
    for (int64_t e = 0; e < static_cast<int64_t>(m_.t) * k; ++e) regW += static_cast<double>(m_.W[e]) * m_.W[e];
    out.touched.assign(touched_.begin(), touched_.begin() + n_touched_);
    out.dV.assign(static_cast<size_t>(n_touched_) * k, 0.0f);
    out.dw.assign(static_cast<size_t>(n_touched_), 0.0f);
    for (int64_t s = 0; s < n_touched_; ++s) {
        const feature_t f = touched_[s];
        sparse_gradient(s, out.dV.data() + s * k, &out.dw[s]);
        const float* v = m_.V + static_cast<int64_t>(f) * k;
        double sq = static_cast<double>(m_.w[f]) * m_.w[f];
        for (int f2 = 0; f2 < k; ++f2) sq += static_cast<double>(v[f2]) * v[f2];
        regV += static_cast<double>(l2_of_slot(s)) * sq;
        slot_of_feature_[f] = -1;
    }
    out.objective = obj + 0.5 * cfg_.attention_l2 * regW + 0.5 * regV;
    out.dense = total_;
}

}  // namespace afm
