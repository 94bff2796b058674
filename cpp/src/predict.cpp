#include "afm/predict.hpp"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <vector>

#include "afm/block_kernels.hpp"
#include "afm/team_clock.hpp"
#include "afm/team_judge.hpp"
#include "afm/trainer.hpp"

namespace afm {

// A Predictor's memory between calls: W packed once (the model is read only), one scratch per thread, the team's
// judgement and each team thread's CPU seconds of the current call.
struct PredictWork {
    PackedW Wp;
    std::vector<BlockScratch> scratch;
    TeamJudge judge;
    std::vector<double> work_cpu;
};

namespace {

// Runs the forward pass over all rows, block by block, and hands every finished block to
// `emit(first_row, block, scratch)`. Chunks of rows are shared out dynamically; each output element is
// written by one thread and does not depend on the split.
// With `weights` set (pair_attention: row r's at weights + pair_indptr[r]), a long row's forward writes its
// attention weights there itself, tile by tile (isa/long_rows.inc); emit copies those of the other blocks.
template <class Emit>
void forward_blocks(const ModelView& m, const CsrView& X, bool attention, int n_threads, Emit emit,
                    const int64_t* pair_indptr = nullptr, float* weights = nullptr, PredictWork* kept = nullptr,
                    const IsaKernels* bf16 = nullptr) {
    // bf16: training's forward in bf16 mode (tests), every block in the rows layout on that set.
    const IsaKernels& isa = bf16 ? *bf16 : kernels_for(m.k, m.t);
    const IsaKernels& pm_isa = bf16 ? *bf16 : pairs_major_kernels_for(m.k, m.t);  // pairs-major blocks (the trainer's rule)
    int64_t max_nnz = 0, total_pairs = 0;
    for (int64_t r = 0; r < X.n_rows; ++r) {
        const int64_t nnz = X.indptr[r + 1] - X.indptr[r];
        max_nnz = std::max(max_nnz, nnz);
        total_pairs += pair_count(nnz);
    }
    // Chunks of about kChunkPairs pairs (at most 256 rows): at k = t = 64 that is ~1 ms of work, worth waking a
    // thread for. No more threads than chunks, so a few rows run on the calling thread alone.
    constexpr int64_t kChunkPairs = 8192;
    const int64_t avg_pairs = X.n_rows > 0 ? total_pairs / X.n_rows : 0;
    const int64_t chunk_rows = std::max<int64_t>(1, std::min<int64_t>(256, kChunkPairs / std::max<int64_t>(avg_pairs, 1)));
    const int64_t n_chunks = (X.n_rows + chunk_rows - 1) / chunk_rows;
    const int team_nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(resolve_threads(n_threads), n_chunks)));
    // A kept predictor's judge may run a team's rows on the calling thread alone (its cores are busy elsewhere).
    TeamJudge* judge = kept && team_nt > 1 ? &kept->judge : nullptr;
    const int nt = judge && !judge->team_next() ? 1 : team_nt;
    // The judge's measure of a call's work: its rows, plus its pairs (AFM, FwFM) or its non-zeros (FM).
    const double units = static_cast<double>(
        X.n_rows + (attention || m.field_weighted() ? total_pairs : X.indptr[X.n_rows] - X.indptr[0]));
    // Scratch for the pairs there are, not the full block budget: predicting one row must not touch 256 KiB.
    // (A long row has more pairs than block_pair_cap, so it stays long: total_pairs >= its pairs.)
    int64_t pair_cap = block_pair_cap(max_nnz, m.k, m.t, attention);
    if (attention) pair_cap = std::min(pair_cap, std::max<int64_t>(total_pairs, 1));
    const int64_t tile = std::min(pair_cap, block_pair_target(m.k, m.t));
    // Kept work memory (a Predictor: W packed at its construction, scratch grown only when needed), else fresh.
    PredictWork fresh;
    PredictWork& work = kept ? *kept : fresh;
    const PackedW& Wp = work.Wp;
    if (attention && !kept) {
        fresh.Wp.resize(m.k, m.t);
        fresh.Wp.pack(isa, m);
    }
    // Allocated here, outside the parallel region: an allocation failure must not happen inside it.
    std::vector<BlockScratch>& scratch = work.scratch;
    if (scratch.size() < static_cast<size_t>(nt)) scratch.resize(static_cast<size_t>(nt));
    const bool fa = attention && m.field_aware();  // field-aware AFM runs the rows layout only
    const int64_t pm_from = (fa || bf16) ? -1 : pairs_major_from(pm_isa, m.k, m.t);  // so does bf16
    for (int i = 0; i < nt; ++i) {
        BlockScratch& s = scratch[static_cast<size_t>(i)];
        s.ensure(pair_cap, tile, kMaxBlockRows, attention ? max_nnz : 1, m.k, m.t);
        s.pairs_major_from = pm_from;
        if (m.field_weighted() && !attention) s.reserve_fields(max_nnz, m.k, m.n_fields);
        if (fa) s.reserve_pair_fields(pair_cap);
        if (bf16 && attention) s.reserve_bf16(std::min(pair_cap, block_pair_target(m.k, m.t)), m.k, m.t);
    }

    // The rows of chunks [lo, hi), block by block, on scratch sc.
    const auto run_chunk = [&](BlockScratch& sc, BlockRows& block, int64_t chunk) {
        const int64_t hi = std::min(X.n_rows, (chunk + 1) * chunk_rows);
        for (int64_t row = chunk * chunk_rows; row < hi;) {
            const int64_t first = row;
            block.n = 0;
            int64_t pairs = 0;
            BlockLayoutCut layout;
            while (row < hi && block.n < sc.row_cap) {
                const int64_t start = X.indptr[row], nnz = X.indptr[row + 1] - start;
                const int64_t P = attention ? pair_count(nnz) : 0;
                if (block.n > 0 && pairs + P > sc.pair_cap) break;
                if (layout.cut_before(sc, P)) break;
                const int r = block.n++;
                block.idx[r] = X.indices + start;
                block.x[r] = X.values + start;
                block.nnz[r] = nnz;
                pairs += P;
                ++row;
            }
            block.long_weights = weights && block.n == 1 && pairs > sc.pair_cap ? weights + pair_indptr[first]
                                                                                : nullptr;
            (layout.pairs_major_block(sc, pairs) ? pm_isa : isa).forward(m, Wp, attention, block, sc);
            emit(first, block, sc);
        }
    };
    using clock = std::chrono::steady_clock;
    const auto wall = [](clock::time_point since) { return std::chrono::duration<double>(clock::now() - since).count(); };
    const clock::time_point start = judge ? clock::now() : clock::time_point{};
    if (nt == 1) {  // one chunk (a few rows), or the judge's call alone: on the calling thread, no OpenMP region
        const double cpu0 = judge ? team::thread_cpu_seconds() : 0.0;
        FlushDenormals ftz;
        BlockRows block;
        for (int64_t chunk = 0; chunk < n_chunks; ++chunk) run_chunk(scratch[0], block, chunk);
        if (judge) judge->solo_call(wall(start), cpu0 < 0.0 ? -1.0 : team::thread_cpu_seconds() - cpu0, units);
        return;
    }
    std::vector<double>* work_cpu = judge ? &kept->work_cpu : nullptr;
    if (work_cpu) work_cpu->assign(static_cast<size_t>(nt), 0.0);
#pragma omp parallel num_threads(nt)
    {
        FlushDenormals ftz;
        const int tid = thread_id();
        const double cpu0 = work_cpu ? team::thread_cpu_seconds() : 0.0;
        BlockScratch& sc = scratch[tid];
        BlockRows block;
#pragma omp for schedule(dynamic, 1) nowait
        for (int64_t chunk = 0; chunk < n_chunks; ++chunk) run_chunk(sc, block, chunk);
        if (work_cpu) (*work_cpu)[static_cast<size_t>(tid)] = cpu0 < 0.0 ? -1.0 : team::thread_cpu_seconds() - cpu0;
    }
    if (judge) {
        double cpu = 0.0;
        for (const double c : *work_cpu) cpu = c < 0.0 || cpu < 0.0 ? -1.0 : cpu + c;
        judge->team_call(wall(start), cpu, units);
    }
}

}  // namespace

void predict(const ModelView& m, const CsrView& X, bool attention, float* out, int n_threads) {
    forward_blocks(m, X, attention, n_threads, [out](int64_t first, const BlockRows& block, const BlockScratch& sc) {
        for (int r = 0; r < block.n; ++r) out[first + r] = sc.y[r];
    });
}

void predict_bf16(const ModelView& m, const CsrView& X, bool attention, float* out, int n_threads) {
    const IsaKernels* bf16 = bf16_kernels();
    if (!bf16) throw std::invalid_argument(kBf16Missing);
    forward_blocks(
        m, X, attention, n_threads,
        [out](int64_t first, const BlockRows& block, const BlockScratch& sc) {
            for (int r = 0; r < block.n; ++r) out[first + r] = sc.y[r];
        },
        nullptr, nullptr, nullptr, bf16);
}

void pair_attention(const ModelView& m, const CsrView& X, bool attention, const int64_t* pair_indptr, float* out,
                    int n_threads) {
    if (!attention) {  // uniform pooling: every pair weighs 1
        std::fill(out, out + pair_indptr[X.n_rows], 1.0f);
        return;
    }
    forward_blocks(
        m, X, attention, n_threads,
        [&](int64_t first, const BlockRows& block, const BlockScratch& sc) {
            const int64_t P = sc.pair_off[block.n];  // 0 for a long row: its weights are written already
            std::copy(sc.a.data(), sc.a.data() + P, out + pair_indptr[first]);
        },
        pair_indptr, out);
}

Predictor::Predictor(const ModelView& m, bool attention)
    : m_(m), attention_(attention), work_(std::make_unique<PredictWork>()) {
    if (attention) {
        work_->Wp.resize(m.k, m.t);
        work_->Wp.pack(kernels_for(m.k, m.t), m);
    }
}

Predictor::~Predictor() = default;

long long Predictor::team_calls() const { return work_->judge.team_calls(); }
long long Predictor::solo_calls() const { return work_->judge.solo_calls(); }

void Predictor::run(const CsrView& X, float* out, int n_threads) {
    forward_blocks(
        m_, X, attention_, n_threads,
        [out](int64_t first, const BlockRows& block, const BlockScratch& sc) {
            for (int r = 0; r < block.n; ++r) out[first + r] = sc.y[r];
        },
        nullptr, nullptr, work_.get());
}

}  // namespace afm
