// Checks one instruction set's GEMM kernel element by element against a float64 loop, at every shape the
// issue lists (k, t in {1, 7, 10, 15, 16, 17, 24, 48, 64, 100, 256} as N and K; M filling whole register
// tiles and leaving tails), with a bias row, accumulation into C, B packed by pack_b (as W is) and
// transposed operands (strided A and B, as the backward GEMMs read them).
//
// Built by tests/test_kernel_shapes.py once per ISA this CPU has, with that ISA's compiler flags from
// CMakeLists.txt (so AFM_VW, the tiles and the masked tails are the library's own); prints
// "<isa>: N passed, M failed".
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif
#include "afm/block_kernels.hpp"

namespace afm {
namespace checked {
#define AFM_ISA_NAME "checked"
#include "isa/block_kernels.inc"
#undef AFM_ISA_NAME
}  // namespace checked
}  // namespace afm

using namespace afm;

static int failures = 0, passes = 0;

int main() {
#if defined(__AVX512F__)
    const char* isa = "avx512";
#elif defined(__AVX2__)
    const char* isa = "avx2";
#else
    const char* isa = "baseline";
#endif
    std::mt19937 gen(2024);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const int sizes[] = {1, 7, 10, 15, 16, 17, 24, 48, 64, 100, 256};
    const int rows[] = {1, 7, 16, 17, 48, 100};
    for (int M : rows) for (int N : sizes) for (int K : sizes) {
        // A is stored M x K (row-major) and K x M (transposed); B is stored K x N and N x K.
        std::vector<float> A(M * K), B(K * N), bias(N), C0(M * N);
        for (auto* v : {&A, &B, &bias, &C0}) for (auto& x : *v) x = normal(gen);
        std::vector<float> At(K * M), Bt(N * K);
        for (int i = 0; i < M; ++i) for (int l = 0; l < K; ++l) At[l * M + i] = A[i * K + l];
        for (int l = 0; l < K; ++l) for (int c = 0; c < N; ++c) Bt[c * K + l] = B[l * N + c];
        std::vector<float> packed(static_cast<size_t>(K) * packed_columns(N), -7.0f);
        checked::pack_b(K, N, B.data(), N, 1, packed.data());
        for (int variant = 0; variant < 5; ++variant) {
            // 0: plain, 1: bias, 2: accumulate, 3: A and B transposed + bias, 4: packed B + accumulate
            const bool use_bias = variant == 1 || variant == 3, acc = variant == 2 || variant == 4;
            const int ldc = N + 3;  // C inside a wider array: the guard columns must stay untouched
            std::vector<float> C(M * ldc, 99.0f);
            for (int i = 0; i < M; ++i) for (int c = 0; c < N; ++c) C[i * ldc + c] = C0[i * N + c];
            const float* b = use_bias ? bias.data() : nullptr;
            if (variant == 3)
                checked::gemm_ex(M, N, K, At.data(), 1, M, Bt.data(), 1, K, nullptr, C.data(), ldc, b, acc);
            else if (variant == 4)
                checked::gemm_ex(M, N, K, A.data(), K, 1, B.data(), N, 1, packed.data(), C.data(), ldc, b, acc);
            else
                checked::table().gemm(M, N, K, A.data(), K, 1, B.data(), N, C.data(), ldc, b, acc);
            int bad = 0;
            for (int i = 0; i < M; ++i) {
                for (int c = 0; c < N; ++c) {
                    double s = acc ? C0[i * N + c] : (use_bias ? bias[c] : 0.0);
                    double mag = std::fabs(s);
                    for (int l = 0; l < K; ++l) {
                        s += static_cast<double>(A[i * K + l]) * B[l * N + c];
                        mag += std::fabs(static_cast<double>(A[i * K + l]) * B[l * N + c]);
                    }
                    // float32 accumulation of K + 1 terms: |error| <= (K + 2) eps sum |terms|
                    if (std::fabs(C[i * ldc + c] - s) > (K + 2) * 1.2e-7 * mag + 1e-30) ++bad;
                }
                for (int c = N; c < ldc; ++c) bad += C[i * ldc + c] != 99.0f;
            }
            if (bad) {
                ++failures;
                if (failures <= 20)
                    std::printf("FAILED %s gemm variant %d M=%d N=%d K=%d: %d bad elements\n", isa, variant, M, N, K,
                                bad);
            } else {
                ++passes;
            }
        }
    }
    std::printf("%s: %d passed, %d failed\n", isa, passes, failures);
    return failures == 0 ? 0 : 1;
}
