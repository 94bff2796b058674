// What this build and CPU offer, from Python: OpenMP threads and the kernels' instruction sets.
#include <pybind11/stl.h>

#include <cstdint>
#include <string>

#include "afm/block_kernels.hpp"
#include "afm/common.hpp"
#include "bindings.hpp"

namespace afm::binding {

namespace py = pybind11;
using namespace pybind11::literals;

void bind_platform(py::module_& mod) {
    mod.def("openmp_enabled", &afm::openmp_enabled, "True when the core was built with OpenMP.");
    mod.def("resolve_threads", &afm::resolve_threads, "requested"_a,
            "Number of threads a kernel uses for `requested` (0 = all cores).");

    mod.def(
        "pairs_major_from",
        [](int k, int t) { return afm::pairs_major_from(afm::pairs_major_kernels_for(k, t), k, t); }, "k"_a, "t"_a,
        "Rows of at least this many pairs run the pairs-major layout (0: every row, -1: none) for a model with\n"
        "embedding size k and attention size t, now (on kernel_isa(k, t, pairs)'s set; small k and t and long\n"
        "rows, unless _testing.set_pair_layout forced a layout).");

    mod.def("active_isa", &afm::active_isa, "The instruction set the kernels use now (avx512, avx2 or baseline).");
    mod.def(
        "kernel_isa",
        [](int k, int t, int64_t pairs) { return afm::kernels_for_row(k, t, pairs).name; },
        "k"_a, "t"_a, "pairs"_a = 0,
        "The instruction set a row of `pairs` pairs trains and predicts with, for a model with embedding size k\n"
        "and attention size t: the active one, except that k, t <= 8 use avx2 on an avx512 CPU in the rows layout\n"
        "unless a set was forced (it is faster there); rows that run pairs-major (pairs_major_from) stay on avx512.");
    mod.def(
        "bf16_supported", [] { return afm::bf16_kernels() != nullptr; },
        "True when this build and CPU can train in precision='bf16' (AVX512_BF16: the avx512bf16 kernel set).");
    mod.def("supported_isas", &afm::supported_isas, "Instruction sets this build and CPU can use, best first.");
    mod.def(
        "select_isa",
        [](const std::string& name) {
            if (!afm::select_isa(name))
                throw py::value_error("instruction set '" + name + "' is not available here (available: " +
                                      std::string(py::str(py::cast(afm::supported_isas()))) + ")");
        },
        "name"_a, "Use the kernels of instruction set `name` from now on (FASTAFM_ISA sets it at import).");
}

}  // namespace afm::binding
