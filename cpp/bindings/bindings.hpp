// The parts of fastafm._core, one file each; module.cpp calls them in this order (a type is registered before
// any function that takes it, so that signatures name it).
#pragma once
#include <pybind11/pybind11.h>

namespace afm::binding {

void bind_platform(pybind11::module_& mod);  // platform.cpp: OpenMP, threads, instruction sets
void bind_training(pybind11::module_& mod);  // trainer.cpp: Loss, Optimizer, TrainConfig, Trainer, scratch_bytes
void bind_predict(pybind11::module_& mod);   // predict.cpp: predict, pair_attention
void bind_serving(pybind11::module_& mod);  // serving.cpp: Predictor (the serving loop's)
void bind_libfm(pybind11::module_& mod);     // libfm.cpp: the libFM parser
void bind_rawlog(pybind11::module_& mod);    // rawlog.cpp: FNV-1a and ValueTable of the raw-log pipeline
void bind_linear(pybind11::module_& mod);    // linear.cpp: LinearRows, the exact linear stage's products
void bind_testing(pybind11::module_& mod);   // testing.cpp: hooks for tests, benchmarks and fuzzers only

}  // namespace afm::binding
