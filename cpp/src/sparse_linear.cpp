// The exact linear stage's Hessian-vector product (afm/sparse_linear.hpp).
#include "afm/sparse_linear.hpp"

#include <algorithm>
#include <cmath>
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

namespace {

double dot(const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0.0;
    for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
    return s;
}

}  // namespace

int conjugate_gradient(const CsrView& X, int64_t n_cols, const double* c, double l2, const double* inv_diag,
                       const double* grad, double tol, int max_iter, double* p, int n_threads) {
    const size_t n = static_cast<size_t>(n_cols) + 1;  // the bias, then w
    std::vector<double> r(n), z(n), d(n), hd(n);
    for (size_t i = 0; i < n; ++i) {
        p[i] = 0.0;
        r[i] = -grad[i];
        z[i] = inv_diag[i] * r[i];
    }
    d = z;
    double rz = dot(r, z);
    int products = 0;
    while (products < max_iter) {
        hd[0] = csr_hessian_product(X, n_cols, d.data() + 1, d[0], c, hd.data() + 1, n_threads);
        ++products;
        for (size_t i = 1; i < n; ++i) hd[i] += l2 * d[i];
        const double curvature = dot(d, hd);
        if (!(curvature > 0.0)) break;
        const double alpha = rz / curvature;
        for (size_t i = 0; i < n; ++i) {
            p[i] += alpha * d[i];
            r[i] -= alpha * hd[i];
        }
        if (std::sqrt(dot(r, r)) <= tol) break;
        for (size_t i = 0; i < n; ++i) z[i] = inv_diag[i] * r[i];
        const double rz_next = dot(r, z);
        const double beta = rz_next / rz;
        for (size_t i = 0; i < n; ++i) d[i] = z[i] + beta * d[i];
        rz = rz_next;
    }
    return products;
}

}  // namespace afm
