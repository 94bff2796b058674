// Picks the kernel set for this CPU once; FASTAFM_ISA (avx512 | avx2 | baseline) forces one.
#include <cstdlib>
#include <mutex>

#include "afm/block_kernels.hpp"

namespace afm {

namespace {

bool cpu_has(const std::string& name) {
#if defined(AFM_X86) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (name == "avx512") return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
    if (name == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return name == "baseline";
}

const IsaKernels* table_for(const std::string& name) {
#ifdef AFM_HAVE_ISA_CLONES
    if (name == "avx512") return &isa_avx512::table();
    if (name == "avx2") return &isa_avx2::table();
#endif
    if (name == "baseline") return &isa_baseline::table();
    return nullptr;
}

const IsaKernels* g_active = nullptr;
bool g_forced = false;  // FASTAFM_ISA or select_isa chose the set: no per-shape choice (tests force paths)
std::once_flag g_once;

void init_default() {
    std::call_once(g_once, [] {
        // An unknown or unsupported FASTAFM_ISA falls back to the best path; active_isa() tells which.
        const char* forced = std::getenv("FASTAFM_ISA");
        if (forced && *forced && table_for(forced) && cpu_has(forced)) {
            g_active = table_for(forced);
            g_forced = true;
        } else {
            g_active = table_for(supported_isas().front());
        }
    });
}

}  // namespace

std::vector<std::string> supported_isas() {
    std::vector<std::string> out;
    for (const char* name : {"avx512", "avx2", "baseline"})
        if (table_for(name) && cpu_has(name)) out.emplace_back(name);
    return out;
}

bool select_isa(const std::string& name) {
    const IsaKernels* t = table_for(name);
    if (!t || !cpu_has(name)) return false;
    init_default();
    g_active = t;
    g_forced = true;
    return true;
}

const IsaKernels& kernels() {
    init_default();
    return *g_active;
}

std::string active_isa() { return kernels().name; }

const IsaKernels& kernels_for(int k, int t) {
    const IsaKernels& best = kernels();
#ifdef AFM_HAVE_ISA_CLONES
    // k, t <= 8 fill one 8-float vector exactly and half a 16-float one: there the AVX2 set trains 1.2-1.3x
    // faster than the AVX-512 one (bench/RESULTS.md, shape sweep), so it is used unless a set was forced.
    if (!g_forced && &best == &isa_avx512::table() && k <= 8 && t <= 8 && cpu_has("avx2"))
        return isa_avx2::table();
#endif
    (void)k;
    (void)t;
    return best;
}

}  // namespace afm
