// The core's trainer as Python sees it, shared by the Trainer class (trainer.cpp) and the test hooks
// (testing.cpp): one place that checks a fit's arrays and one that runs an epoch from Python.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>

#include "afm/model.hpp"
#include "afm/trainer.hpp"
#include "arrays.hpp"

namespace afm::binding {

// A Trainer with the arrays it views (held for its life) and a guard against two threads training it at once.
struct PyTrainer {
    afm::ModelView m;
    Viewed viewed;  // params and optimizer slots
    std::unique_ptr<afm::Trainer> trainer;
    bool busy = false;
    afm::Loss loss = afm::Loss::squared;
};

// A trainer of `params` (written in place) with the optimizer `state` of cfg.optimizer, every array checked
// (and refused where a written one shares memory with another) before the trainer is built without the GIL.
std::unique_ptr<PyTrainer> make_trainer(const py::dict& params, const py::dict& state, const afm::TrainConfig& cfg,
                                        const py::object& counts);

// One Trainer::run_epoch over CSR arrays from Python, checked first, with the GIL released. `model` holds the
// arrays the trainer writes: none of the data arrays may share memory with them.
py::dict run_epoch(afm::Trainer& trainer, const afm::ModelView& m, const Viewed& model, const py::array& indptr,
                   const py::array& indices, const py::array& values, const py::array& y, const py::array& order,
                   const py::object& progress, double progress_interval, const py::object& weights);

}  // namespace afm::binding
