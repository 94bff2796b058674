// Picks the kernel set for this CPU once; FASTAFM_ISA (avx512 | avx2 | baseline) forces one.
#include <array>
#include <atomic>
#include <cstdlib>
#include <mutex>

#include "afm/block_kernels.hpp"

namespace afm {

namespace {

#ifdef AFM_HAVE_ISA_CLONES
bool cpu_has_avx512() {
#if defined(AFM_X86) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
#else
    return false;
#endif
}

bool cpu_has_avx2() {
#if defined(AFM_X86) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}
#endif

bool cpu_has_any() { return true; }

#ifdef AFM_HAVE_BF16
bool cpu_has_avx512bf16() {
#if defined(AFM_X86) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return cpu_has_avx512() && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bf16");
#else
    return false;
#endif
}
#endif

// The instruction sets this build has, best first: the one list every function below walks. A set is its
// kernel table (isa_<set>.cpp: block_kernels.inc compiled with the set's flags, CMakeLists.txt; its name is
// table().name, what FASTAFM_ISA and select_isa take) and the check that this CPU runs it.
struct Isa {
    const IsaKernels& (*kernels)();
    bool (*cpu_has)();
    // The set that rows-layout blocks of models with k, t <= 8 run on instead, unless a set was forced (nullptr:
    // this one). On AVX-512: AVX2, as k, t <= 8 fill one 8-float vector exactly and half a 16-float one, where
    // the AVX2 set trains 1.2-1.3x faster (bench/RESULTS.md, shape sweep).
    const IsaKernels& (*small_shapes)();
};

const Isa kIsas[] = {
#ifdef AFM_HAVE_ISA_CLONES
    {&isa_avx512::table, &cpu_has_avx512, &isa_avx2::table},
    {&isa_avx2::table, &cpu_has_avx2, nullptr},
#endif
    {&isa_baseline::table, &cpu_has_any, nullptr},
};
constexpr size_t kIsaCount = sizeof(kIsas) / sizeof(kIsas[0]);

const Isa* isa_named(const std::string& name) {
    for (const Isa& isa : kIsas)
        if (name == isa.kernels().name) return &isa;
    return nullptr;
}

const Isa* isa_of(const IsaKernels* table) {
    for (const Isa& isa : kIsas)
        if (&isa.kernels() == table) return &isa;
    return nullptr;
}

const Isa& best_supported() {
    for (const Isa& isa : kIsas)
        if (isa.cpu_has()) return isa;
    return kIsas[kIsaCount - 1];  // not reached: the baseline runs everywhere
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

const Choice* choice_for(const Isa& isa, bool forced) {
    // Every (set, forced) pair has one static Choice, so publishing one never allocates or frees.
    static const std::array<Choice, 2 * kIsaCount> choices = [] {
        std::array<Choice, 2 * kIsaCount> c{};
        for (size_t i = 0; i < kIsaCount; ++i) {
            c[2 * i] = {&kIsas[i].kernels(), false};
            c[2 * i + 1] = {&kIsas[i].kernels(), true};
        }
        return c;
    }();
    return &choices[2 * static_cast<size_t>(&isa - kIsas) + (forced ? 1 : 0)];
}

const Choice& current() {
    std::call_once(g_once, [] {
        // An unknown or unsupported FASTAFM_ISA falls back to the best path; active_isa() tells which.
        const char* forced = std::getenv("FASTAFM_ISA");
        const Isa* isa = forced && *forced ? isa_named(forced) : nullptr;
        const Choice* c = isa && isa->cpu_has() ? choice_for(*isa, true) : choice_for(best_supported(), false);
        g_choice.store(c, std::memory_order_release);
    });
    return *g_choice.load(std::memory_order_acquire);
}

}  // namespace

const IsaKernels* bf16_kernels() {
#ifdef AFM_HAVE_BF16
    if (cpu_has_avx512bf16()) return &isa_avx512bf16::table();
#endif
    return nullptr;
}

std::vector<std::string> supported_isas() {
    std::vector<std::string> out;
    for (const Isa& isa : kIsas)
        if (isa.cpu_has()) out.emplace_back(isa.kernels().name);
    return out;
}

bool select_isa(const std::string& name) {
    const Isa* isa = isa_named(name);
    if (!isa || !isa->cpu_has()) return false;
    current();  // FASTAFM_ISA is read first, so that it never overrides this later choice
    g_choice.store(choice_for(*isa, true), std::memory_order_release);
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
    if (!c.forced && k <= 8 && t <= 8) {
        const Isa* active = isa_of(c.table);
        const Isa* narrow = active && active->small_shapes ? isa_of(&active->small_shapes()) : nullptr;
        if (narrow && narrow->cpu_has()) return narrow->kernels();
    }
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
