// The exact linear stage's Hessian-vector product (afm/sparse_linear.hpp).
#include "afm/sparse_linear.hpp"

#include <algorithm>
#include <vector>

namespace afm {

int hessian_threads(int64_t n_rows, int64_t n_cols, int requested) {
    int64_t t = resolve_threads(requested);
    t = std::min<int64_t>(t, 1 + n_rows / 4096);  // a few thousand rows a thread, or the buffers cost more
    const int64_t per_buffer = std::max<int64_t>(1, n_cols) * int64_t(sizeof(double));
    t = std::min<int64_t>(t, 1 + kHessianBufferBytes / per_buffer);
    return static_cast<int>(std::max<int64_t>(1, t));
}

double csr_hessian_product(const CsrView& X, int64_t n_cols, const double* AFM_RESTRICT v, double v0,
                           const double* AFM_RESTRICT c, double* AFM_RESTRICT out, int n_threads) {
    const int threads = hessian_threads(X.n_rows, n_cols, n_threads);
    std::vector<double> buffers(static_cast<size_t>(threads - 1) * static_cast<size_t>(n_cols));
    std::vector<double> bias(static_cast<size_t>(threads), 0.0);
    std::fill(out, out + n_cols, 0.0);
#pragma omp parallel num_threads(threads)
    {
        const int t = thread_id();
        const int64_t lo = X.n_rows * t / threads, hi = X.n_rows * (t + 1) / threads;
        double* AFM_RESTRICT acc = t == 0 ? out : buffers.data() + static_cast<size_t>(t - 1) * n_cols;
        double b = 0.0;
        for (int64_t r = lo; r < hi; ++r) {
            const int64_t begin = X.indptr[r], end = X.indptr[r + 1];
            double z = v0;
            for (int64_t k = begin; k < end; ++k) z += static_cast<double>(X.values[k]) * v[X.indices[k]];
            const double u = c[r] * z;
            b += u;
            for (int64_t k = begin; k < end; ++k) acc[X.indices[k]] += static_cast<double>(X.values[k]) * u;
        }
        bias[static_cast<size_t>(t)] = b;
        if (threads > 1) {
#pragma omp barrier
#pragma omp for schedule(static)
            for (int64_t j = 0; j < n_cols; ++j) {
                double s = out[j];
                for (int u = 1; u < threads; ++u) s += buffers[static_cast<size_t>(u - 1) * n_cols + j];
                out[j] = s;
            }
        }
    }
    double total = 0.0;
    for (double b : bias) total += b;
    return total;
}

}  // namespace afm
