// Mini-batch training over CSR rows: one call runs a whole epoch in C++.
//
// Per batch: (1) threads take fixed contiguous chunks of the batch's rows (static schedule), run the
// row forward/backward passes, and add dense gradients to their own buffers; (2) the per-thread dense
// buffers are reduced in thread order and the per-non-zero sparse gradients are summed per feature in
// row order; (3) Adagrad/SGD updates the dense parameters and the touched rows of V and w.
// Hence a fit is bit-identical for a fixed seed and thread count (sparse sums even for any thread count).
//
// Threading contract: the model and accumulators are written only in step (3), by disjoint ranges;
// one OpenMP team persists over all batches of the epoch; nothing is allocated inside the batch loop.
#pragma once
#include <vector>

#include "afm/common.hpp"
#include "afm/model.hpp"
#include "afm/row_kernels.hpp"

namespace afm {

struct EpochResult {
    double loss_sum = 0.0;  // summed data loss of the epoch's rows (before the update of their batch)
    int64_t n_rows = 0;
    int64_t n_batches = 0;
};

// Gradient of the batch objective J(B) (docs/model.md), for tests and diagnostics.
struct BatchGradients {
    double objective = 0.0;
    DenseGrad dense;                 // includes attention_l2 * W
    std::vector<feature_t> touched;  // distinct feature ids, in order of first appearance
    std::vector<float> dV;           // touched x k, includes l2 * V
    std::vector<float> dw;           // touched, includes l2 * w
};

class Trainer {
public:
    // `accum` must have the model's shapes (ignored for SGD). `y` holds regression targets or {-1,+1} labels.
    Trainer(const ModelView& model, const ModelView& accum, const CsrView& X, const float* y, const TrainConfig& cfg);

    // One epoch over the rows order[0..n_order), in batches of cfg.batch_size.
    EpochResult run_epoch(const int64_t* order, int64_t n_order);

    // Gradient of J over the given rows as one batch; the model is not changed.
    void batch_gradients(const int64_t* rows, int64_t n_rows, bool use_dropout, BatchGradients& out);

private:
    void prepare_buffers(const int64_t* order, int64_t n_order);
    void batch_setup(const int64_t* rows, int64_t nb);                         // one thread
    void batch_compute(const int64_t* rows, int64_t nb, bool use_dropout);     // all threads
    void batch_update();                                                       // all threads

    ModelView m_;
    ModelView acc_;
    CsrView X_;
    const float* y_;
    TrainConfig cfg_;
    int n_threads_;
    int64_t dense_size_;

    std::vector<RowScratch> scratch_;   // per thread
    std::vector<DenseGrad> dense_;      // per thread
    std::vector<double> loss_;          // per thread
    DenseGrad total_;                   // reduced dense gradient of the batch

    std::vector<int64_t> nz_offset_;    // batch rows' first non-zero in the batch's nz order
    std::vector<float> dV_nz_, dw_nz_;  // per non-zero sparse gradients
    std::vector<int32_t> slot_of_feature_;  // n_features, -1 when untouched in this batch
    std::vector<int32_t> nz_slot_;
    std::vector<feature_t> touched_;
    std::vector<int64_t> slot_ptr_, slot_nz_;  // non-zeros grouped by feature, in row order
    std::vector<float> dV_touched_, dw_touched_;
    int64_t n_touched_ = 0;
};

// Loss and dloss/dy of one row; for logistic, label is -1 or +1.
double row_loss(Loss loss, float y_pred, float label, float* grad);

}  // namespace afm
