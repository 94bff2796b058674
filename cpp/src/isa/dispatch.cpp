// Picks the kernel set for this CPU once; FASTAFM_ISA (avx512 | avx2 | baseline) forces one.
#include <atomic>
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

// The active set and whether it was forced (FASTAFM_ISA or select_isa: then no per-shape choice, since tests
// force paths), published together in one atomic pointer: select_isa may run in one thread while others
// start kernels, and a reader must never see a half-written choice.
struct Choice {
    const IsaKernels* table;
    bool forced;
};
std::atomic<const Choice*> g_choice{nullptr};
std::atomic<int> g_layout{static_cast<int>(PairLayout::automatic)};  // set_pair_layout
std::once_flag g_once;

const Choice* choice_for(const IsaKernels* table, bool forced) {
    // Every (set, forced) pair has one static Choice, so publishing one never allocates or frees.
    static const Choice choices[] = {
#ifdef AFM_HAVE_ISA_CLONES
        {&isa_avx512::table(), false}, {&isa_avx512::table(), true}, {&isa_avx2::table(), false},
        {&isa_avx2::table(), true},
#endif
        {&isa_baseline::table(), false}, {&isa_baseline::table(), true}};
    for (const Choice& c : choices)
        if (c.table == table && c.forced == forced) return &c;
    return &choices[0];  // not reached: table_for only returns the sets above
}

const Choice& current() {
    std::call_once(g_once, [] {
        // An unknown or unsupported FASTAFM_ISA falls back to the best path; active_isa() tells which.
        const char* forced = std::getenv("FASTAFM_ISA");
        const Choice* c = (forced && *forced && table_for(forced) && cpu_has(forced))
                              ? choice_for(table_for(forced), true)
                              : choice_for(table_for(supported_isas().front()), false);
        g_choice.store(c, std::memory_order_release);
    });
    return *g_choice.load(std::memory_order_acquire);
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
    current();  // FASTAFM_ISA is read first, so that it never overrides this later choice
    g_choice.store(choice_for(t, true), std::memory_order_release);
    return true;
}

const IsaKernels& kernels() { return *current().table; }

std::string active_isa() { return kernels().name; }

PairLayout set_pair_layout(PairLayout layout) {
    return static_cast<PairLayout>(g_layout.exchange(static_cast<int>(layout)));
}

int64_t pairs_major_from(const IsaKernels& isa, int k, int t) {
    if (k > kPairsMajorMaxDim || t > kPairsMajorMaxDim) return -1;
    switch (static_cast<PairLayout>(g_layout.load(std::memory_order_relaxed))) {
        case PairLayout::rows: return -1;
        case PairLayout::pairs: return 0;
        default: return isa.pairs_major_rows(k, t);
    }
}

const IsaKernels& kernels_for(int k, int t) {
    const Choice& c = current();  // one read: the set and whether it was forced belong together
#ifdef AFM_HAVE_ISA_CLONES
    // k, t <= 8 fill one 8-float vector exactly and half a 16-float one: there the AVX2 set trains 1.2-1.3x
    // faster than the AVX-512 one (bench/RESULTS.md, shape sweep), so it is used unless a set was forced.
    if (!c.forced && c.table == &isa_avx512::table() && k <= 8 && t <= 8 && cpu_has("avx2"))
        return isa_avx2::table();
#endif
    (void)k;
    (void)t;
    return *c.table;
}

const IsaKernels& pairs_major_kernels_for(int k, int t) {
    const Choice& c = current();
    return c.forced ? kernels_for(k, t) : *c.table;
}

const IsaKernels& kernels_for_row(int k, int t, int64_t pairs) {
    const IsaKernels& pm = pairs_major_kernels_for(k, t);
    const int64_t from = pairs_major_from(pm, k, t);
    return from >= 0 && pairs >= from ? pm : kernels_for(k, t);
}

}  // namespace afm
