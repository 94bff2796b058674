// Shared types, the OpenMP shim and small helpers of the fastafm core.
//
// Why a shim: the core also builds without OpenMP (e.g. macOS without libomp); then every
// parallel region runs on one thread and thread_id() is 0. No other file calls omp_* directly.
#pragma once
#include <cstdint>
#include <cstddef>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <xmmintrin.h>
#define AFM_X86 1
#endif

#define AFM_RESTRICT __restrict__

namespace afm {

using feature_t = int32_t;  // feature ids
using offset_t = int64_t;   // CSR offsets and row counts

inline int thread_id() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

inline int team_size() {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

// 0 means "all cores"; without OpenMP the answer is always 1.
inline int resolve_threads(int requested) {
#ifdef _OPENMP
    if (requested > 0) return requested;
    int n = omp_get_num_procs();
    return n > 0 ? n : 1;
#else
    (void)requested;
    return 1;
#endif
}

inline bool openmp_enabled() {
#ifdef _OPENMP
    return true;
#else
    return false;
#endif
}

// Flushes subnormal floats to zero (FTZ/DAZ) on this thread while in scope, and restores the caller's
// mode afterwards. Why: once the softmax or Adagrad produce values below 1e-38, every operation on them
// takes ~100 cycles on x86 and an epoch can run 30x slower. Set per worker thread, never process-wide.
class FlushDenormals {
public:
    FlushDenormals() {
#ifdef AFM_X86
        saved_ = _mm_getcsr();
        _mm_setcsr(saved_ | 0x8040u);  // FTZ (bit 15) | DAZ (bit 6)
#endif
    }
    ~FlushDenormals() {
#ifdef AFM_X86
        _mm_setcsr(saved_);
#endif
    }
    FlushDenormals(const FlushDenormals&) = delete;
    FlushDenormals& operator=(const FlushDenormals&) = delete;

    // The thread's own mode again while in scope: the calling thread runs the caller's code (a Python
    // progress callback) from inside a parallel region, and that code must not see its denormals flushed.
    class Paused {
    public:
        explicit Paused(const FlushDenormals& f) {
#ifdef AFM_X86
            kernel_mode_ = _mm_getcsr();
            _mm_setcsr(f.saved_);
#else
            (void)f;
#endif
        }
        ~Paused() {
#ifdef AFM_X86
            _mm_setcsr(kernel_mode_);
#endif
        }
        Paused(const Paused&) = delete;
        Paused& operator=(const Paused&) = delete;

    private:
        unsigned kernel_mode_ = 0;
    };

private:
    unsigned saved_ = 0;
};

// Read-only view of a CSR matrix (row-major sparse rows).
struct CsrView {
    const int64_t* indptr = nullptr;   // n_rows + 1
    const feature_t* indices = nullptr;
    const float* values = nullptr;
    offset_t n_rows = 0;
};

// Rows per block of the fused kernels (a block also ends when its pairs would overflow L2).
constexpr int kMaxBlockRows = 64;

inline int64_t pair_count(int64_t nnz) { return nnz < 2 ? 0 : nnz * (nnz - 1) / 2; }

}  // namespace afm
