// A barrier for the trainer's OpenMP team that spins briefly, then sleeps (Linux futex; elsewhere yields).
//
// Why not `#pragma omp barrier`: libgomp's waiting threads spin (OMP_WAIT_POLICY / GOMP_SPINCOUNT, read once
// at start-up, so a library cannot change them). With another job on a core, a spinning waiter takes CPU
// time from the thread it waits for, and the scheduler never sees an idle core to move that thread to: on
// the 2-core development machine, 2 threads trained 20x slower than 1 with another job running (issue 13).
// Here a waiter spins for about kSpinMicros (a barrier on an idle machine is reached within microseconds of
// the last chunk), then sleeps in the kernel until the last thread arrives.
#pragma once
#include <atomic>
#include <chrono>
#include <climits>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#include <thread>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace afm {

class TeamBarrier {
public:
    static constexpr int kSpinMicros = 50;

    // Before the team uses it (one thread, then a barrier of the team's own).
    void reset(int n_threads) {
        n_ = n_threads;
        arrived_.store(0);
    }

    void wait() {
        if (n_ <= 1) return;
        const unsigned gen = generation_.load(std::memory_order_acquire);
        if (arrived_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
            arrived_.store(0, std::memory_order_relaxed);
            generation_.fetch_add(1, std::memory_order_seq_cst);
            if (sleepers_.load(std::memory_order_seq_cst) > 0) wake_all();
            return;
        }
        const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(kSpinMicros);
        for (int i = 1;; ++i) {
            if (generation_.load(std::memory_order_acquire) != gen) return;
            pause();
            if ((i & 63) == 0 && std::chrono::steady_clock::now() >= until) break;
        }
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        while (generation_.load(std::memory_order_seq_cst) == gen) sleep_while(gen);
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
    }

private:
    static void pause() {
#if defined(__x86_64__) || defined(__i386__)
        _mm_pause();
#endif
    }
    // Sleeps while generation_ == gen (may return spuriously; the caller rechecks).
    void sleep_while(unsigned gen) {
#if defined(__linux__)
        syscall(SYS_futex, reinterpret_cast<unsigned*>(&generation_), FUTEX_WAIT_PRIVATE, gen, nullptr, nullptr, 0);
#else
        (void)gen;
        std::this_thread::yield();
#endif
    }
    void wake_all() {
#if defined(__linux__)
        syscall(SYS_futex, reinterpret_cast<unsigned*>(&generation_), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
#endif
    }

    int n_ = 1;
    std::atomic<int> arrived_{0};
    alignas(64) std::atomic<unsigned> generation_{0};
    std::atomic<int> sleepers_{0};
};

static_assert(sizeof(std::atomic<unsigned>) == sizeof(unsigned), "futex word must be a plain 32-bit integer");

}  // namespace afm
