// fastafm._core: the module entry. Every file of cpp/bindings converts NumPy arrays to raw views and checks
// every shape, dtype and index bound *before* releasing the GIL (the kernels trust their inputs; arrays.hpp),
// then runs the kernels with the GIL released. Errors become ValueError/TypeError; nothing C++ throws escapes an
// OpenMP region.
#include <pybind11/pybind11.h>

#include "bindings.hpp"

PYBIND11_MODULE(_core, mod) {
    mod.doc() = "fastafm compiled core: AFM training, prediction and libFM parsing kernels";
    mod.attr("__version__") = FASTAFM_VERSION;
    afm::binding::bind_platform(mod);
    afm::binding::bind_training(mod);  // before any function that takes a TrainConfig
    afm::binding::bind_predict(mod);
    afm::binding::bind_libfm(mod);
    afm::binding::bind_testing(mod);
}
