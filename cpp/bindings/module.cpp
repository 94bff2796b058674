// fastafm._core: the module entry. Every file of cpp/bindings converts NumPy arrays to raw views and checks
// every shape, dtype and index bound *before* releasing the GIL (the kernels trust their inputs; arrays.hpp),
// then runs the kernels with the GIL released. Errors become ValueError/TypeError; nothing C++ throws escapes an
// OpenMP region.
#include <pybind11/pybind11.h>

#include "bindings.hpp"

namespace py = pybind11;

PYBIND11_MODULE(_core, mod) {
    mod.doc() = "fastafm compiled core: AFM training, prediction and libFM parsing kernels";
    mod.attr("__version__") = FASTAFM_VERSION;
    afm::binding::bind_platform(mod);
    afm::binding::bind_training(mod);  // before any function that takes a TrainConfig
    afm::binding::bind_predict(mod);
    afm::binding::bind_serving(mod);
    afm::binding::bind_libfm(mod);
    afm::binding::bind_rawlog(mod);
    afm::binding::bind_linear(mod);
    // Not part of the package's interface: fastafm never imports it (tests/test_stubs.py checks).
    py::module_ testing = mod.def_submodule(
        "_testing", "Hooks for tests, benchmarks and fuzzers only: a training epoch on a fresh trainer, one batch's\n"
                    "gradients, dropout factors, the GEMM and optimizer kernels alone, and knobs that force a\n"
                    "block layout or pair tile. The fastafm package never calls them.");
    afm::binding::bind_testing(testing);
}
