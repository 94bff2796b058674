#include "afm/predict.hpp"

#include <algorithm>
#include <vector>

#include "afm/row_kernels.hpp"

namespace afm {

namespace {

int64_t max_row_nnz(const CsrView& X) {
    int64_t mx = 0;
    for (int64_t r = 0; r < X.n_rows; ++r) mx = std::max(mx, X.indptr[r + 1] - X.indptr[r]);
    return mx;
}

// Runs the forward pass over all rows and hands each finished row to `emit(row, y, scratch)`.
template <class Emit>
void forward_rows(const ModelView& m, const CsrView& X, bool attention, int n_threads, Emit emit) {
    const int nt = resolve_threads(n_threads);
    const int64_t max_pairs = pair_count(max_row_nnz(X));
#pragma omp parallel num_threads(nt)
    {
        FlushDenormals ftz;
        RowScratch sc;
        sc.reserve(max_pairs, m.k, m.t);
#pragma omp for schedule(dynamic, 64)
        for (int64_t r = 0; r < X.n_rows; ++r) {
            const int64_t lo = X.indptr[r], nnz = X.indptr[r + 1] - lo;
            const float y = row_forward(m, X.indices + lo, X.values + lo, nnz, attention, nullptr, sc);
            emit(r, y, sc);
        }
    }
}

}  // namespace

void predict(const ModelView& m, const CsrView& X, bool attention, float* out, int n_threads) {
    forward_rows(m, X, attention, n_threads, [out](int64_t r, float y, const RowScratch&) { out[r] = y; });
}

void pair_attention(const ModelView& m, const CsrView& X, bool attention, const int64_t* pair_indptr, float* out,
                    int n_threads) {
    forward_rows(m, X, attention, n_threads, [&](int64_t r, float, const RowScratch& sc) {
        const int64_t P = pair_indptr[r + 1] - pair_indptr[r];
        std::copy(sc.a.data(), sc.a.data() + P, out + pair_indptr[r]);
    });
}

}  // namespace afm
