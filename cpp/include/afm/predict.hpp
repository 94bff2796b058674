// Prediction and attention read-out over CSR rows (no dropout, the model is read only).
//
// Threading: rows are split dynamically over the team; each output element is written by one thread,
// and each row's value does not depend on the split, so results are the same for any thread count.
#pragma once
#include "afm/common.hpp"
#include "afm/model.hpp"

namespace afm {

// out[r] = y(x_r), the raw model output (regression value or logit).
void predict(const ModelView& m, const CsrView& X, bool attention, float* out, int n_threads);

// Attention weights a_rs of every row's pairs, written at out[pair_indptr[r] ..), storage order of (r<s).
// pair_indptr (n_rows+1) must hold the prefix sums of m_r (m_r - 1) / 2.
void pair_attention(const ModelView& m, const CsrView& X, bool attention, const int64_t* pair_indptr, float* out,
                    int n_threads);

}  // namespace afm
