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
#include <cstdint>

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

    int size() const { return n_; }

    void wait() {
        if (n_ <= 1) return;
        const unsigned gen = generation_.load(std::memory_order_acquire);
        const int64_t arrival = now_ns();
        for (int64_t first = first_ns_.load(std::memory_order_relaxed);
             arrival < first && !first_ns_.compare_exchange_weak(first, arrival, std::memory_order_relaxed);) {
        }
        if (arrived_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
            // the last to arrive: every earlier arrival's first_ns_ update is visible through arrived_
            spread_ns_.fetch_add(now_ns() - first_ns_.load(std::memory_order_relaxed), std::memory_order_relaxed);
            first_ns_.store(INT64_MAX, std::memory_order_relaxed);
            arrived_.store(0, std::memory_order_relaxed);
            generation_.fetch_add(1, std::memory_order_seq_cst);
            if (sleepers_.load(std::memory_order_seq_cst) > 0) futex_wake_all(&generation_);
            return;
        }
        const int64_t until = arrival + int64_t{1000} * kSpinMicros;
        for (int i = 1;; ++i) {
            if (generation_.load(std::memory_order_acquire) != gen) break;
            pause();
            if ((i & 63) == 0 && now_ns() >= until) {
                sleepers_.fetch_add(1, std::memory_order_seq_cst);
                while (generation_.load(std::memory_order_seq_cst) == gen) futex_wait(&generation_, gen);
                sleepers_.fetch_sub(1, std::memory_order_relaxed);
                break;
            }
        }
    }

    // Seconds, summed over the barriers so far, from the first thread's arrival to the last one's: how long
    // some thread of the team sat idle, whichever thread was late (a thread descheduled by another job). Read
    // by a thread that has passed the barriers it counts.
    double spread_seconds() const { return 1e-9 * static_cast<double>(spread_ns_.load(std::memory_order_relaxed)); }
    // Sleeps while *word == value (may return spuriously; callers recheck); wakes every sleeper on word.
    static void futex_wait(std::atomic<unsigned>* word, unsigned value) {
#if defined(__linux__)
        syscall(SYS_futex, reinterpret_cast<unsigned*>(word), FUTEX_WAIT_PRIVATE, value, nullptr, nullptr, 0);
#else
        (void)word;
        (void)value;
        std::this_thread::yield();
#endif
    }
    static void futex_wake_all(std::atomic<unsigned>* word) {
#if defined(__linux__)
        syscall(SYS_futex, reinterpret_cast<unsigned*>(word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
#else
        (void)word;
#endif
    }

private:
    static int64_t now_ns() {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(
                   std::chrono::steady_clock::now().time_since_epoch()).count();
    }
    static void pause() {
#if defined(__x86_64__) || defined(__i386__)
        _mm_pause();
#endif
    }
    int n_ = 1;
    std::atomic<int> arrived_{0};
    alignas(64) std::atomic<unsigned> generation_{0};
    std::atomic<int> sleepers_{0};
    std::atomic<int64_t> first_ns_{INT64_MAX}, spread_ns_{0};
};

// Where the team's other threads sleep while thread 0 trains alone (Trainer's solo mode): closed, they wait
// in wait_open() until open() (without spinning: solo mode means the cores are busy).
class TeamGate {
public:
    void close() { open_.store(false, std::memory_order_seq_cst); }
    void open() {
        open_.store(true, std::memory_order_seq_cst);
        gen_.fetch_add(1, std::memory_order_seq_cst);
        TeamBarrier::futex_wake_all(&gen_);
    }
    bool is_open() const { return open_.load(std::memory_order_acquire); }
    unsigned generation() const { return gen_.load(std::memory_order_seq_cst); }  // counts open() calls
    void wait_open() {
        for (;;) {
            const unsigned g = gen_.load(std::memory_order_seq_cst);
            if (open_.load(std::memory_order_seq_cst)) return;
            TeamBarrier::futex_wait(&gen_, g);
        }
    }

private:
    std::atomic<bool> open_{true};
    alignas(64) std::atomic<unsigned> gen_{0};
};

static_assert(sizeof(std::atomic<unsigned>) == sizeof(unsigned), "futex word must be a plain 32-bit integer");

}  // namespace afm
