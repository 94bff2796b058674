// Float32 FMA peak of this CPU, per vector ISA and thread count.
//
// Each thread runs NACC independent multiply-add chains, acc[j] = acc[j] * a + b, held in vector registers.
// NACC = 12 covers latency x throughput on current x86 cores (FMA latency 4-5 cycles x 2 FMA pipes = 8-10
// chains in flight), and 12 accumulators + 2 constants fit the 16 registers of AVX2/SSE (AVX-512 has 32).
// With a = 1 - 2^-20 and b small the values converge to b / (1 - a) and never become subnormal.
//
// Built with no -m/-march flag: each kernel carries its own __attribute__((target(...))) and runs only when
// __builtin_cpu_supports says the CPU (and OS) can, so the binary runs on any x86-64.
//   avx512   512-bit vfmadd (16 lanes, 2 FLOPs per lane)
//   avx2fma  256-bit vfmadd (8 lanes)
//   fma128   128-bit vfmadd (4 lanes)
//   sse      128-bit mulps + addps, no FMA (4 lanes; what a baseline x86-64 build without dispatch can use)
//   scalar   scalar vfmadd (1 lane)
// A dependent chain of integer adds (1 cycle each on every x86 core since the P6) measures the clock the
// core actually runs at, so GFLOP/s can also be given as FLOPs per cycle.
//
// Usage: fma_peak [--threads 1,2,16] [--isa avx512,avx2fma,...] [--min-time 0.2] [--repeats 5]
// Output: one line per measurement, "clock <threads> <GHz per thread>" and
// "peak <isa> <threads> <GFLOP/s> <FLOPs per cycle per thread>", plus "isa <name> <0|1>" lines saying which
// ISAs the CPU has.
#include <omp.h>
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr int NACC = 12;
volatile float g_sink = 0.0f;  // keeps the results alive

#define REP12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

// ---------------------------------------------------------------------------------------------- kernels
// Each returns the FLOPs it executed: iters * NACC * lanes * 2.

__attribute__((target("avx512f"))) double run_avx512(int64_t iters) {
    const __m512 a = _mm512_set1_ps(1.0f - 1.0f / (1 << 20)), b = _mm512_set1_ps(1e-3f);
#define DECL(j) __m512 c##j = _mm512_set1_ps(0.001f * (j + 1));
    REP12(DECL)
#undef DECL
    for (int64_t i = 0; i < iters; ++i) {
#define STEP(j) c##j = _mm512_fmadd_ps(c##j, a, b);
        REP12(STEP)
#undef STEP
        // An empty asm with the accumulators as in/out operands keeps them in registers and the loop un-elided.
        __asm__ volatile("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5));
        __asm__ volatile("" : "+v"(c6), "+v"(c7), "+v"(c8), "+v"(c9), "+v"(c10), "+v"(c11));
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                             _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
    float out[16];
    _mm512_storeu_ps(out, s);
    g_sink = out[0] + out[15];
    return static_cast<double>(iters) * NACC * 16 * 2;
}

__attribute__((target("avx2,fma"))) double run_avx2fma(int64_t iters) {
    const __m256 a = _mm256_set1_ps(1.0f - 1.0f / (1 << 20)), b = _mm256_set1_ps(1e-3f);
#define DECL(j) __m256 c##j = _mm256_set1_ps(0.001f * (j + 1));
    REP12(DECL)
#undef DECL
    for (int64_t i = 0; i < iters; ++i) {
#define STEP(j) c##j = _mm256_fmadd_ps(c##j, a, b);
        REP12(STEP)
#undef STEP
        __asm__ volatile("" : "+x"(c0), "+x"(c1), "+x"(c2), "+x"(c3), "+x"(c4), "+x"(c5));
        __asm__ volatile("" : "+x"(c6), "+x"(c7), "+x"(c8), "+x"(c9), "+x"(c10), "+x"(c11));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                             _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
    float out[8];
    _mm256_storeu_ps(out, s);
    g_sink = out[0] + out[7];
    return static_cast<double>(iters) * NACC * 8 * 2;
}

__attribute__((target("fma"))) double run_fma128(int64_t iters) {
    const __m128 a = _mm_set1_ps(1.0f - 1.0f / (1 << 20)), b = _mm_set1_ps(1e-3f);
#define DECL(j) __m128 c##j = _mm_set1_ps(0.001f * (j + 1));
    REP12(DECL)
#undef DECL
    for (int64_t i = 0; i < iters; ++i) {
#define STEP(j) c##j = _mm_fmadd_ps(c##j, a, b);
        REP12(STEP)
#undef STEP
        __asm__ volatile("" : "+x"(c0), "+x"(c1), "+x"(c2), "+x"(c3), "+x"(c4), "+x"(c5));
        __asm__ volatile("" : "+x"(c6), "+x"(c7), "+x"(c8), "+x"(c9), "+x"(c10), "+x"(c11));
    }
    __m128 s = _mm_add_ps(_mm_add_ps(_mm_add_ps(c0, c1), _mm_add_ps(c2, c3)),
                          _mm_add_ps(_mm_add_ps(c4, c5), _mm_add_ps(c6, c7)));
    s = _mm_add_ps(s, _mm_add_ps(_mm_add_ps(c8, c9), _mm_add_ps(c10, c11)));
    g_sink = _mm_cvtss_f32(s);
    return static_cast<double>(iters) * NACC * 4 * 2;
}

// Baseline x86-64 (SSE2): a multiply then an add per chain step. The chain's latency is mul + add, so 12
// chains may not saturate both ports on every core; that is the honest figure for non-FMA code anyway.
double run_sse(int64_t iters) {
    const __m128 a = _mm_set1_ps(1.0f - 1.0f / (1 << 20)), b = _mm_set1_ps(1e-3f);
#define DECL(j) __m128 c##j = _mm_set1_ps(0.001f * (j + 1));
    REP12(DECL)
#undef DECL
    for (int64_t i = 0; i < iters; ++i) {
#define STEP(j) c##j = _mm_add_ps(_mm_mul_ps(c##j, a), b);
        REP12(STEP)
#undef STEP
        __asm__ volatile("" : "+x"(c0), "+x"(c1), "+x"(c2), "+x"(c3), "+x"(c4), "+x"(c5));
        __asm__ volatile("" : "+x"(c6), "+x"(c7), "+x"(c8), "+x"(c9), "+x"(c10), "+x"(c11));
    }
    __m128 s = _mm_add_ps(_mm_add_ps(_mm_add_ps(c0, c1), _mm_add_ps(c2, c3)),
                          _mm_add_ps(_mm_add_ps(c4, c5), _mm_add_ps(c6, c7)));
    s = _mm_add_ps(s, _mm_add_ps(_mm_add_ps(c8, c9), _mm_add_ps(c10, c11)));
    g_sink = _mm_cvtss_f32(s);
    return static_cast<double>(iters) * NACC * 4 * 2;
}

__attribute__((target("fma"))) double run_scalar(int64_t iters) {
    const __m128 a = _mm_set_ss(1.0f - 1.0f / (1 << 20)), b = _mm_set_ss(1e-3f);
#define DECL(j) __m128 c##j = _mm_set_ss(0.001f * (j + 1));
    REP12(DECL)
#undef DECL
    for (int64_t i = 0; i < iters; ++i) {
#define STEP(j) c##j = _mm_fmadd_ss(c##j, a, b);
        REP12(STEP)
#undef STEP
        __asm__ volatile("" : "+x"(c0), "+x"(c1), "+x"(c2), "+x"(c3), "+x"(c4), "+x"(c5));
        __asm__ volatile("" : "+x"(c6), "+x"(c7), "+x"(c8), "+x"(c9), "+x"(c10), "+x"(c11));
    }
    __m128 s = _mm_add_ss(_mm_add_ss(_mm_add_ss(c0, c1), _mm_add_ss(c2, c3)),
                          _mm_add_ss(_mm_add_ss(c4, c5), _mm_add_ss(c6, c7)));
    s = _mm_add_ss(s, _mm_add_ss(_mm_add_ss(c8, c9), _mm_add_ss(c10, c11)));
    g_sink = _mm_cvtss_f32(s);
    return static_cast<double>(iters) * NACC * 2;
}

// A dependent chain of 1-cycle integer adds: iters * 64 cycles.
double run_clock(int64_t iters) {
    uint64_t x = 0;
    const uint64_t one = 1;
    for (int64_t i = 0; i < iters; ++i) {
#define A4 "add %1, %0\n\t" "add %1, %0\n\t" "add %1, %0\n\t" "add %1, %0\n\t"
        __asm__ volatile(A4 A4 A4 A4 A4 A4 A4 A4 A4 A4 A4 A4 A4 A4 A4 A4 : "+r"(x) : "r"(one));
#undef A4
    }
    g_sink = static_cast<float>(x);
    return static_cast<double>(iters) * 64;  // cycles
}

struct Isa {
    const char* name;
    bool (*supported)();
    double (*run)(int64_t);
};

bool has_avx512() { return __builtin_cpu_supports("avx512f"); }
bool has_avx2fma() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
bool has_fma() { return __builtin_cpu_supports("fma"); }
bool has_sse() { return __builtin_cpu_supports("sse2"); }

const Isa kIsas[] = {
    {"avx512", has_avx512, run_avx512}, {"avx2fma", has_avx2fma, run_avx2fma}, {"fma128", has_fma, run_fma128},
    {"sse", has_sse, run_sse},          {"scalar", has_fma, run_scalar},
};

// Every thread runs `run(iters)` between two barriers; the wall time of the slowest thread counts.
// Returns the total work units per second over the team (FLOPs/s, or cycles/s for the clock).
double timed(double (*run)(int64_t), int threads, int64_t iters) {
    double work = 0.0, t0 = 0.0, t1 = 0.0;
#pragma omp parallel num_threads(threads) reduction(+ : work)
    {
#pragma omp barrier
#pragma omp single
        t0 = omp_get_wtime();  // implicit barrier after single
        work += run(iters);
#pragma omp barrier
#pragma omp single
        t1 = omp_get_wtime();
    }
    return work / (t1 - t0);
}

// Iterations of `run` lasting about min_time seconds on one thread.
int64_t calibrate(double (*run)(int64_t), double min_time) {
    int64_t iters = 1000;
    for (;;) {
        auto s = std::chrono::steady_clock::now();
        run(iters);
        double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - s).count();
        if (dt > min_time / 4 || iters > (int64_t(1) << 40))
            return std::max<int64_t>(1, static_cast<int64_t>(iters * (min_time / std::max(dt, 1e-9))));
        iters *= 4;
    }
}

// Best rate of `repeats` trials, each lasting about min_time seconds.
double best_rate(double (*run)(int64_t), int threads, double min_time, int repeats) {
    const int64_t iters = calibrate(run, min_time);
    double best = 0.0;
    for (int r = 0; r < repeats; ++r) best = std::max(best, timed(run, threads, iters));
    return best;
}

// FLOPs per cycle per thread: each trial times the FMA kernel right after the clock chain, and the median
// of the ratios is kept. On a machine shared with other work both rates shrink alike, so this stays near
// the core's true figure when GFLOP/s does not.
double flops_per_cycle(double (*run)(int64_t), int threads, double min_time, int repeats) {
    const int64_t iters = calibrate(run, min_time / 2), clock_iters = calibrate(run_clock, min_time / 2);
    std::vector<double> ratios;
    for (int r = 0; r < repeats; ++r) {
        const double cycles = timed(run_clock, threads, clock_iters);
        const double flops = timed(run, threads, iters);
        ratios.push_back(flops / cycles);
    }
    std::sort(ratios.begin(), ratios.end());
    return ratios[ratios.size() / 2];
}

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    size_t pos = 0;
    while (pos <= s.size()) {
        size_t next = s.find(',', pos);
        if (next == std::string::npos) next = s.size();
        if (next > pos) out.push_back(s.substr(pos, next - pos));
        pos = next + 1;
    }
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<int> threads;
    std::vector<std::string> isas;
    double min_time = 0.2;
    int repeats = 5;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "%s needs a value\n", arg.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (arg == "--threads") {
            for (auto& s : split(value())) threads.push_back(std::atoi(s.c_str()));
        } else if (arg == "--isa") {
            isas = split(value());
        } else if (arg == "--min-time") {
            min_time = std::atof(value().c_str());
        } else if (arg == "--repeats") {
            repeats = std::atoi(value().c_str());
        } else {
            std::fprintf(stderr, "unknown argument %s\n", arg.c_str());
            return 2;
        }
    }
    const int procs = omp_get_num_procs();
    if (threads.empty()) threads = {1, 2, procs};
    std::sort(threads.begin(), threads.end());
    threads.erase(std::unique(threads.begin(), threads.end()), threads.end());
    threads.erase(std::remove_if(threads.begin(), threads.end(), [](int t) { return t < 1; }), threads.end());

    __builtin_cpu_init();
    std::printf("procs %d\n", procs);
    for (const Isa& isa : kIsas) std::printf("isa %s %d\n", isa.name, isa.supported() ? 1 : 0);
    std::fflush(stdout);
    for (int t : threads) {
        std::printf("clock %d %.4f\n", t, best_rate(run_clock, t, min_time, repeats) / t / 1e9);
        std::fflush(stdout);
    }
    for (const Isa& isa : kIsas) {
        if (!isas.empty() && std::find(isas.begin(), isas.end(), isa.name) == isas.end()) continue;
        if (!isa.supported()) continue;
        for (int t : threads) {
            const double gflops = best_rate(isa.run, t, min_time, repeats) / 1e9;
            std::printf("peak %s %d %.3f %.3f\n", isa.name, t, gflops, flops_per_cycle(isa.run, t, min_time, repeats));
            std::fflush(stdout);
        }
    }
    return 0;
}
