// Mini-batch training over CSR rows: one call runs a whole epoch in C++.
//
// Per batch: (1) the batch's rows are cut into a fixed number of contiguous chunks (kChunksPerThread per
// configured thread); threads claim chunks dynamically (a core that runs slower, e.g. shared with another
// job, simply takes fewer) and run the fused block kernels (afm/block_kernels.hpp) over them, adding dense
// gradients to the chunk's own buffer, while one thread builds the batch's feature slots; (2) the chunk
// buffers are reduced in chunk order; (3) per touched feature, its non-zeros' gradients are summed in row
// order and the optimizer (its update kernel, afm/optimizers.hpp) updates that row of V and w at once; the dense
// parameters are updated likewise.
// No sum depends on which thread ran what, so a fit is bit-identical for a fixed seed and thread count.
//
// Threading contract: the model and optimizer state are written only in step (3), by disjoint ranges; one
// OpenMP team persists over all batches of the epoch (four barriers per batch, TeamBarrier: spin briefly,
// then sleep, so that a team sharing its cores with other jobs does not spin away their time); nothing is
// allocated inside the batch loop.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "afm/block_kernels.hpp"
#include "afm/common.hpp"
#include "afm/model.hpp"
#include "afm/team_barrier.hpp"
#include "afm/team_clock.hpp"

namespace afm {

// Dense gradient of one thread (or of a batch): one flat buffer [W (t*k) | b (t) | h (t) | p (k) | R | S]
// and w0, so that threads' buffers reduce in one loop (R: field-pair weights, S: field-pair logit terms,
// n_fields^2 floats each where the model has them, none otherwise).
struct alignas(64) DenseGrad {  // a cache line of its own: chunks on different threads write w0 per row
    std::vector<float> data;
    double w0 = 0.0;
    int k = 0, t = 0;
    int64_t nR = 0, nS = 0;  // floats of R's and S's parts
    void resize(int k_, int t_, int64_t nR_ = 0, int64_t nS_ = 0);
    float* W() { return data.data(); }
    float* b() { return data.data() + static_cast<size_t>(t) * k; }
    float* h() { return b() + t; }
    float* p() { return h() + t; }
    float* R() { return p() + k; }
    float* S() { return R() + nR; }
    DenseGradView view() { return {W(), b(), h(), p(), &w0, nR > 0 ? R() : nullptr, nS > 0 ? S() : nullptr}; }
};

struct EpochResult {
    double loss_sum = 0.0;  // summed data loss of the rows trained (each before its batch's update)
    int64_t n_rows = 0;     // rows trained (fewer than asked when stopped)
    int64_t n_batches = 0;
    bool stopped = false;   // the progress callback asked to stop, or the loss diverged
    bool diverged = false;  // a batch's loss was not finite; the epoch stopped before that batch's update
};

// Called by the calling thread between batches, at most every `interval_seconds`, with the rows done so
// far; returning false stops the epoch after the batch just completed (the model stays consistent). It runs
// in the calling thread's own floating-point mode (not the kernels' FTZ/DAZ); an exception it throws stops
// the epoch likewise and is rethrown by run_epoch after the parallel region.
struct ProgressHook {
    std::function<bool(int64_t)> callback;
    double interval_seconds = 0.1;
};

// Gradient of the batch objective J(B) (docs/model.md), for tests and diagnostics.
struct BatchGradients {
    double objective = 0.0;
    DenseGrad dense;                 // includes attention_l2 * W
    std::vector<feature_t> touched;  // distinct feature ids, in order of first appearance
    std::vector<float> dV;           // touched x k, includes l2 * V
    std::vector<float> dw;           // touched, includes l2 * w
};

// Chunks per configured thread: enough that a thread on a slower core waits at most a fraction of a chunk,
// few enough that the chunks' dense gradient buffers (t*k + 2t + k floats each) stay small.
constexpr int kChunksPerThread = 4;

// One trainer per fit: it holds the views of the model and the optimizer state and all work memory, and
// trains any number of row sets (an epoch in memory, or the blocks of a streamed cache) without
// re-reserving: buffers only grow, to the largest rows seen so far.
class Trainer {
public:
    // `opt` holds the slots of cfg.optimizer, with the model's shapes.
    Trainer(const ModelView& model, const OptimizerState& opt, const TrainConfig& cfg);

    // The dropout stream of the next calls (the only settings that change during a fit).
    void set_stream(uint64_t seed, uint64_t epoch) {
        cfg_.seed = seed;
        cfg_.epoch = epoch;
    }
    // n_i of every feature (the rows' occurrence counts) for cfg.frequency_l2; viewed, not copied.
    void set_feature_counts(const float* counts) { counts_ = counts; }

    // One epoch over the rows order[0..n_order) of X (targets y), in batches of cfg.batch_size. `weights`
    // (one finite weight >= 0 per row of X, or nullptr for all 1) multiplies each row's loss and gradient; a
    // row of weight 0 touches no feature (docs/model.md, "Sample weights").
    EpochResult run_epoch(const CsrView& X, const float* y, const float* weights, const int64_t* order,
                          int64_t n_order, const ProgressHook* hook = nullptr);

    // Gradient of J over the given rows of X as one batch; the model is not changed.
    void batch_gradients(const CsrView& X, const float* y, const float* weights, const int64_t* rows, int64_t n_rows,
                         bool use_dropout, BatchGradients& out);

private:
    void use_rows(const CsrView& X, const float* y, const float* weights);  // binds X, sizes the block scratch
    void prepare_buffers(const int64_t* order, int64_t n_order);
    void batch_offsets(const int64_t* rows, int64_t nb);                    // one thread
    void batch_slots(const int64_t* rows, int64_t nb);                      // one thread
    void chunk_compute(const int64_t* rows, int64_t nb, int c, bool use_dropout);  // the claiming thread
    // All threads: offsets, slots and chunks (ends with a barrier), then the chunks' dense buffers reduced
    // into total_ (no barrier after: the caller's next `single` provides it).
    void batch_compute(const int64_t* rows, int64_t nb, bool use_dropout);
    void sparse_gradient(int64_t slot, float* dv, float* dw) const;  // summed in row order, + L2
    // Cache hints for touched feature `slot`'s rows (model, optimizer slots, per-non-zero gradients), issued
    // this many slots before the update reaches it; slots past the batch's are ignored.
    static constexpr int64_t kSlotsAhead = 6;
    void prefetch_slot(int64_t slot) const;
    float l2_of_slot(int64_t slot) const;  // l2 + the frequency_l2 share of touched feature `slot`
    // One optimizer step on values [off, off + n) of the parameter `param` (and of its slots), with the
    // coefficients `s` (for an optimizer that counts steps, those at the step count of these values).
    void step(float* ModelView::*param, int64_t off, const float* grad, int64_t n, const UpdateStep& s) const;
    void batch_update();                                                    // all threads, ends with a barrier
    void team_wait() { barrier_.wait(); }
    void choose_mode(double batch_start, double batch_seconds);             // thread 0: team or solo next

    ModelView m_;
    OptimizerState opt_;
    CsrView X_;
    const float* y_ = nullptr;
    const float* counts_ = nullptr;      // n_i per feature (frequency_l2)
    const float* w_ = nullptr;           // per-row sample weights of X_, nullptr: all 1
    TrainConfig cfg_;
    const IsaKernels& isa_;     // rows-layout blocks and the optimizer steps (kernels_for)
    const IsaKernels& pm_isa_;  // pairs-major blocks (pairs_major_kernels_for)
    const OptimizerSpec& optimizer_;  // opt_.kind's row of the optimizer table
    UpdateKernel update_;             // its update kernel on isa_
    int n_threads_;
    TeamBarrier barrier_;                // the team's barriers between the phases of a batch
    TeamGate gate_;                      // closed in solo mode: the team's other threads sleep there
    // Work of a batch, claimed by whichever active thread is free (reset by thread 0 per batch).
    std::atomic<int64_t> next_chunk_{0}, next_slice_{0}, next_touched_{0};
    std::atomic<int> next_wrow_{0};
    std::atomic<bool> slots_claimed_{false};  // batch_slots taken by a thread this batch
    // Solo mode (run_epoch): thread 0 trains alone while the cores are busy with other jobs. Thread 0's state.
    int team_ = 1;
    bool solo_ = false, solo_next_ = false;
    std::atomic<bool> exit_{false};      // set by thread 0 before gate_.open(); read after the generation
    int64_t resume_b0_ = 0;              // the batch the team resumes at, likewise
    int solo_left_ = 0, solo_len_ = 32, window_n_ = 0;
    bool probing_ = false;               // the team is back after solo batches: judged on a short window
    bool contended_ = false;             // the last window judged was contended (kept across epochs)
    double spread_at_batch_ = 0.0, window_time_ = 0.0, window_wait_ = 0.0;  // barrier_.spread_seconds()
    double window_start_ = 0.0, window_cpu_ = 0.0;  // the window's first batch start: wall clock, team CPU seconds
    struct alignas(64) ThreadCpu {
        double seconds = 0.0;  // the thread's CPU time at its last batch start (read by thread 0 after a barrier)
    };
    std::vector<ThreadCpu> thread_cpu_;
    team::Mode force_mode_ = team::Mode::adaptive;  // FASTAFM_TEAM_MODE (team_clock.hpp)
    int64_t dense_size_;
    int64_t reserved_pairs_ = 0;         // pair tiles the scratch holds (grows only)
    int64_t reserved_nnz_ = 0;           // non-zeros of the longest row it holds (grows only)
    int64_t reserved_tile_ = INT64_MAX;  // the smallest long-row tile it was sized for

    PackedW packed_;                     // W packed for the GEMMs, refreshed per batch
    std::vector<BlockScratch> scratch_;  // per thread
    std::vector<float> sparse_tmp_;      // per thread: one touched row's summed gradient (k floats)
    int n_chunks_max_ = 1;
    int n_chunks_ = 1;                   // of the current batch
    std::vector<DenseGrad> dense_;       // per chunk
    std::vector<double> loss_;           // per chunk
    double batch_loss_ = 0.0;            // of the current batch
    DenseGrad total_;                    // reduced dense gradient of the batch

    std::vector<int64_t> nz_offset_;        // batch rows' first non-zero in the batch's nz order
    std::vector<float> dV_nz_, dw_nz_;      // per non-zero sparse gradients
    std::vector<int32_t> slot_of_feature_;  // n_features, -1 when untouched in this batch
    std::vector<int32_t> nz_slot_;
    std::vector<feature_t> touched_;
    std::vector<int64_t> slot_ptr_, slot_nz_;  // non-zeros grouped by feature, in row order
    int64_t n_touched_ = 0;
};

// Pairs a block of rows whose longest has max_row_nnz non-zeros may hold: the L2 budget, or the longest row
// up to long_row_pairs, whichever is more; 1 for uniform pooling, which forms no pair tiles. A row with more
// pairs is streamed through tiles of block_pair_target pairs (isa/long_rows.inc).
int64_t block_pair_cap(int64_t max_row_nnz, int k, int t, bool attention);

// Bytes of block scratch (pair tiles, per-row and per-non-zero buffers) that training or prediction reserves
// on n_threads threads for rows of up to max_row_nnz non-zeros (the Python side's memory checks use it):
// O(pair_cap (k + t) + max_row_nnz k) per thread, whatever the row's pair count.
int64_t block_scratch_bytes(int64_t max_row_nnz, int k, int t, int n_threads, bool attention);

// Loss and dloss/dy of one row; for logistic, label t is in [-1, 1]: the class -1 / +1, or a rate target
// c = (1 + t) / 2 in (0, 1) (clicks / impressions), trained as the expanded 0/1 rows (docs/model.md).
double row_loss(Loss loss, float y_pred, float label, float* grad);

// Pairs a block may hold so that its E and Z tiles stay in L2 (256 KiB, FASTAFM_BLOCK_BYTES); also the tile
// of a long row.
int64_t block_pair_target(int k, int t);

// Pairs above which a row is long (streamed through tiles, its sums over pairs in float64): 8 MiB of E and
// Z rows, at least block_pair_target.
int64_t long_row_pairs(int k, int t);

// Test knob: when pairs > 0, both block_pair_target and long_row_pairs are `pairs` (so that small rows take
// the streamed path); 0 restores the defaults. Returns the previous setting. Results change only by rounding.
int64_t set_pair_tile(int64_t pairs);

}  // namespace afm
