// Checks the 16-wide (AVX-512) configuration of the block kernels against the 4-wide one on random inputs.
//
// Why: a CPU without AVX-512 cannot run the real AVX-512 copy, but GCC lowers 64-byte vector types to
// narrower instructions, so the same source with AFM_VW = 16, AFM_MR = 8, AFM_NV = 3 (tile shapes, tails,
// packing, remainders) runs anywhere. tests/test_vector_widths.py compiles and runs this file.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>  // built with the real -m flags (tests/test_kernel_shapes.py): the masked tails
#endif
#include "afm/block_kernels.hpp"

namespace afm {
namespace wide {
#define AFM_ISA_NAME "wide16"
#define AFM_VW 16
#define AFM_MR 8
#define AFM_NV 3
#include "isa/block_kernels.inc"
#undef AFM_ISA_NAME
}  // namespace wide
namespace narrow {
#define AFM_ISA_NAME "narrow4"
#define AFM_VW 4
#define AFM_MR 6
#define AFM_NV 2
#include "isa/block_kernels.inc"
#undef AFM_ISA_NAME
}  // namespace narrow

}  // namespace afm

using namespace afm;

static int failures = 0, passes = 0;

static void check(const char* what, const std::vector<float>& a, const std::vector<float>& b, int k, int t) {
    double scale = 1e-3, err = 0.0;
    for (size_t i = 0; i < a.size(); ++i) {
        scale = std::fmax(scale, std::fabs(b[i]));
        err = std::fmax(err, std::fabs(a[i] - b[i]));
    }
    if (err <= 2e-4 * scale) {
        ++passes;
    } else {
        ++failures;
        std::printf("FAILED %s k=%d t=%d: max error %g, scale %g\n", what, k, t, err, scale);
    }
}

int main() {
    std::mt19937 gen(12345);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    auto fill = [&](std::vector<float>& v, float sd) { for (auto& x : v) x = sd * normal(gen); };

    // The in-register transpose (the pairs-major gather of v x): exact, at both widths.
    {
        auto fill_index = [](auto* x, int vw) {
            for (int i = 0; i < vw; ++i)
                for (int j = 0; j < vw; ++j) x[i][j] = static_cast<float>(100 * i + j);
        };
        wide::vf xw[16];
        narrow::vf xn[4];
        fill_index(xw, 16);
        fill_index(xn, 4);
        wide::transpose(xw);
        narrow::transpose(xn);
        bool ok = true;
        for (int i = 0; i < 16; ++i)
            for (int j = 0; j < 16; ++j) ok = ok && xw[i][j] == static_cast<float>(100 * j + i);
        for (int i = 0; i < 4; ++i)
            for (int j = 0; j < 4; ++j) ok = ok && xn[i][j] == static_cast<float>(100 * j + i);
        if (ok) {
            ++passes;
        } else {
            ++failures;
            std::printf("FAILED transpose\n");
        }
    }

    // GEMM on odd shapes, with and without bias/accumulation and strided A.
    for (int M : {1, 5, 9, 17, 40}) for (int N : {1, 7, 16, 33, 48, 50}) for (int K : {1, 3, 64, 300}) {
        std::vector<float> A(M * K), B(K * N), bias(N), C1(M * N), C2(M * N);
        fill(A, 1.0f); fill(B, 1.0f); fill(bias, 1.0f); fill(C1, 1.0f);
        C2 = C1;
        wide::table().gemm(M, N, K, A.data(), 1, M, B.data(), N, C1.data(), N, nullptr, true);  // A transposed
        narrow::table().gemm(M, N, K, A.data(), 1, M, B.data(), N, C2.data(), N, nullptr, true);
        check("gemm accumulate", C1, C2, K, N);
        wide::table().gemm(M, N, K, A.data(), K, 1, B.data(), N, C1.data(), N, bias.data(), false);
        narrow::table().gemm(M, N, K, A.data(), K, 1, B.data(), N, C2.data(), N, bias.data(), false);
        check("gemm bias", C1, C2, K, N);
    }

    // Forward and backward of a block of rows (0, 1, 2 and many non-zeros, repeated ids), with dropout; and of
    // one long row of 14 non-zeros (91 pairs) streamed through tiles of 1, 7 and 13 pairs (tails, tiles that
    // start inside a run of pairs of one non-zero). Where k, t <= kPairsMajorMaxDim also with one of the two in
    // the pairs-major layout (pm: the wide one, else the narrow one), so each layout is checked against the other.
    for (int k : {1, 3, 16, 17, 40, 64}) for (int t : {1, 5, 16, 33, 64}) for (bool attention : {true, false})
    for (int tile : {0, 1, 7, 13}) for (int pm : {-1, 0, 1}) for (bool fw : {false, true}) {
        if (tile > 0 && !attention) continue;
        if (fw && (attention || pm >= 0 || tile > 0)) continue;  // FwFM: uniform pooling with field weights
        if (pm >= 0 && (k > kPairsMajorMaxDim || t > kPairsMajorMaxDim || !attention)) continue;
        const int64_t nf = 23;
        std::vector<float> w0(1), w(nf), V(nf * k), W(t * k), b(t), h(t), p(k);
        fill(w0, 1.0f); fill(w, 0.3f); fill(V, 0.5f); fill(W, 0.5f); fill(b, 0.3f); fill(h, 1.5f); fill(p, 1.0f);
        ModelView m{w0.data(), w.data(), V.data(), W.data(), b.data(), h.data(), p.data(), nf, k, t};
        const int F = fw ? 4 : 0;  // FwFM: 4 fields (one feature alone in field 3), a symmetric R
        std::vector<float> R(F * F);
        std::vector<int32_t> field(nf);
        for (int64_t i = 0; i < nf; ++i) field[i] = i == 5 ? 3 : static_cast<int32_t>(i % 3);
        for (int a = 0; a < F; ++a) for (int c = a; c < F; ++c) R[a * F + c] = R[c * F + a] = 0.5f + 0.25f * (a + 2 * c);
        if (fw) {
            m.R = R.data();
            m.field = field.data();
            m.n_fields = F;
        }
        const int block_nnz[] = {0, 1, 2, 9, 3, 14, 39}, long_nnz[] = {14};
        const int* nnz = tile > 0 ? long_nnz : block_nnz;
        const int n_rows = tile > 0 ? 1 : 7;
        std::vector<int32_t> idx;
        std::vector<float> x;
        for (int r = 0; r < n_rows; ++r) for (int j = 0; j < nnz[r]; ++j) {
            idx.push_back(static_cast<int32_t>(gen() % nf));
            x.push_back(0.5f + 0.5f * std::fabs(normal(gen)));
        }
        int64_t pairs = 0;
        for (int r = 0; r < n_rows; ++r) pairs += nnz[r] * (nnz[r] - 1) / 2;
        std::vector<float> dV1(idx.size() * k), dV2(dV1.size()), dw1(idx.size()), dw2(idx.size());
        std::vector<float> grads[2];
        std::vector<float> outs[2];
        for (int variant = 0; variant < 2; ++variant) {
            const IsaKernels& isa = variant == 0 ? wide::table() : narrow::table();
            BlockScratch s;
            // A long row: blocks of `tile` pairs (it has more), streamed in tiles of that size.
            s.reserve(tile > 0 ? tile : pairs, tile > 0 ? tile : pairs, n_rows, 39, k, t);
            s.pairs_major_from = pm >= 0 && (variant == 0) == (pm == 1) ? 0 : -1;
            s.reserve_fields(39, k, F);
            BlockRows rows;
            rows.n = n_rows;
            rows.has_mask = true;
            int64_t off = 0;
            for (int r = 0; r < n_rows; ++r) {
                rows.idx[r] = idx.data() + off;
                rows.x[r] = x.data() + off;
                rows.nnz[r] = nnz[r];
                rows.dV[r] = (variant == 0 ? dV1 : dV2).data() + off * k;
                rows.dw[r] = (variant == 0 ? dw1 : dw2).data() + off;
                for (int f = 0; f < k; ++f) s.mask[r * k + f] = (f % 3 == 1) ? 0.0f : 1.5f;
                off += nnz[r];
            }
            PackedW Wp;  // W packed at this variant's vector width
            Wp.resize(k, t);
            Wp.pack(isa, m);
            isa.forward(m, Wp, attention, rows, s);
            outs[variant].assign(s.y.begin(), s.y.end());
            for (int r = 0; r < n_rows; ++r) s.g[r] = 0.7f - 0.3f * r;
            std::vector<float> dense(t * k + 2 * t + k + F * F, 0.0f);
            double dw0 = 0.0;
            DenseGradView dg{dense.data(), dense.data() + t * k, dense.data() + t * k + t, dense.data() + t * k + 2 * t,
                             &dw0, fw ? dense.data() + t * k + 2 * t + k : nullptr};
            isa.backward(m, Wp, attention, rows, s, dg);
            grads[variant] = dense;
        }
        check(tile > 0 ? "forward y (long row)" : attention ? "forward y" : fw ? "forward y (FwFM)" : "forward y (uniform)", outs[0], outs[1],
              k, t);
        check("backward dense", grads[0], grads[1], k, t);
        check("backward dV", dV1, dV2, k, t);
        check("backward dw", dw1, dw2, k, t);
    }

    // Optimizers.
    for (int n : {1, 7, 16, 33, 100}) {
        std::vector<float> th1(n), g(n), acc1(n, 0.5f);
        fill(th1, 1.0f); fill(g, 1.0f);
        std::vector<float> th2 = th1, acc2 = acc1;
        afm::UpdateStep s;
        s.lr = 0.1f;
        float* acc1p[] = {acc1.data()};
        float* acc2p[] = {acc2.data()};
        wide::table().update_of(afm::Optimizer::adagrad)(th1.data(), acc1p, g.data(), n, s);
        narrow::table().update_of(afm::Optimizer::adagrad)(th2.data(), acc2p, g.data(), n, s);
        check("adagrad", th1, th2, n, 0);
        wide::table().update_of(afm::Optimizer::sgd)(th1.data(), nullptr, g.data(), n, s);
        narrow::table().update_of(afm::Optimizer::sgd)(th2.data(), nullptr, g.data(), n, s);
        check("sgd", th1, th2, n, 0);
        std::vector<float> m1(n, 0.0f), v1(n, 0.0f);
        std::vector<float> m2 = m1, v2 = v1;
        s.adam = afm::adam_coefficients(0.9, 0.999, 1e-8, 0.1, 1.0);
        float* mv1[] = {m1.data(), v1.data()};
        float* mv2[] = {m2.data(), v2.data()};
        for (int rep = 0; rep < 2; ++rep) {  // the second call starts from non-zero moments
            wide::table().update_of(afm::Optimizer::adam)(th1.data(), mv1, g.data(), n, s);
            narrow::table().update_of(afm::Optimizer::adam)(th2.data(), mv2, g.data(), n, s);
        }
        check("adam", th1, th2, n, 0);
        check("adam m", m1, m2, n, 0);
        check("adam v", v1, v2, n, 0);
    }
    std::printf("%d passed, %d failed\n", passes, failures);
    return failures == 0 ? 0 : 1;
}
