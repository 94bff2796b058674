// Training from Python: the settings (Loss, Optimizer, TrainConfig), the optimizers' slot names, the core's
// Trainer of one fit, and the size of its work memory.
#include <pybind11/stl.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "afm/block_kernels.hpp"
#include "afm/trainer.hpp"
#include "arrays.hpp"
#include "bindings.hpp"
#include "trainer.hpp"

namespace afm::binding {

using namespace pybind11::literals;

std::unique_ptr<PyTrainer> make_trainer(const py::dict& params, const py::dict& state, const afm::TrainConfig& cfg,
                                        const py::object& counts) {
    check_config(cfg);
    auto self = std::make_unique<PyTrainer>();
    self->loss = cfg.loss;
    self->m = model_view(params, "params", true, self->viewed);
    model_fields(params, self->m, "params", self->viewed);
    check_field_pooling(self->m, cfg.attention, "params");
    afm::OptimizerState opt = optimizer_state(state, cfg.optimizer, self->m, self->viewed);
    const float* n_i = feature_counts(counts, cfg, self->m.n_features, self->viewed);
    self->viewed.check_no_aliasing();
    py::gil_scoped_release nogil;
    self->trainer = std::make_unique<afm::Trainer>(self->m, opt, cfg);
    self->trainer->set_feature_counts(n_i);
    return self;
}

py::dict run_epoch(afm::Trainer& trainer, const afm::ModelView& m, const Viewed& model, const py::array& indptr,
                   const py::array& indices, const py::array& values, const py::array& y, const py::array& order,
                   const py::object& progress, double progress_interval, const py::object& weights) {
    Viewed data;
    afm::CsrView X = csr_view(indptr, indices, values, m.n_features, data);
    const float* yp = checked<float>(y, "y", {X.n_rows});
    const float* wp = row_weights(weights, X.n_rows);
    if (wp) data.add(py::reinterpret_borrow<py::array>(weights), "weights", false);
    int64_t n_order = 0;
    const int64_t* ord = row_list(order, "order", X.n_rows, &n_order);
    data.add(y, "y", false);
    data.add(order, "order", false);
    model.check_no_aliasing(&data);

    // Between batches the calling thread takes the GIL back briefly: Ctrl-C (SIGINT) then stops the
    // epoch after the batch in progress, and `progress(rows_done)` can drive a progress bar. Whatever this
    // throws (the callback's Python exception, or any C++ one) stops the epoch; Trainer::run_epoch rethrows
    // it after the parallel region, and pybind11 hands it back to Python (the original Python exception).
    afm::ProgressHook hook;
    hook.interval_seconds = progress_interval;
    hook.callback = [&](int64_t rows_done) -> bool {
        py::gil_scoped_acquire gil;
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();
        if (progress.is_none()) return true;
        py::object verdict = progress(rows_done);
        if (verdict.is_none()) return true;  // a callback that returns nothing continues
        const int truth = PyObject_IsTrue(verdict.ptr());  // any falsy value (False, np.False_, 0, []) stops
        if (truth < 0) throw py::error_already_set();
        return truth != 0;
    };
    afm::EpochResult res;
    {
        py::gil_scoped_release nogil;
        res = trainer.run_epoch(X, yp, wp, ord, n_order, &hook);
    }
    return py::dict("loss_sum"_a = res.loss_sum, "n_rows"_a = res.n_rows, "n_batches"_a = res.n_batches,
                    "stopped"_a = res.stopped, "diverged"_a = res.diverged);
}

void bind_training(py::module_& mod) {
    py::enum_<afm::Loss>(mod, "Loss").value("squared", afm::Loss::squared).value("logistic", afm::Loss::logistic);
    py::enum_<afm::Optimizer> optimizer(mod, "Optimizer");
    for (int i = 0; i < afm::kOptimizerCount; ++i) {  // the optimizer table's rows, in order
        const afm::OptimizerSpec& spec = afm::optimizer_spec(static_cast<afm::Optimizer>(i));
        optimizer.value(spec.name, spec.kind);
    }

    py::class_<afm::TrainConfig>(mod, "TrainConfig", "Settings of a training call (see docs/model.md).")
        .def(py::init<>())
        .def_readwrite("loss", &afm::TrainConfig::loss)
        .def_readwrite("optimizer", &afm::TrainConfig::optimizer)
        .def_readwrite("attention", &afm::TrainConfig::attention)
        .def_readwrite("learn_projection", &afm::TrainConfig::learn_projection)
        .def_readwrite("dropout", &afm::TrainConfig::dropout)
        .def_readwrite("attention_l2", &afm::TrainConfig::attention_l2)
        .def_readwrite("l2", &afm::TrainConfig::l2)
        .def_readwrite("frequency_l2", &afm::TrainConfig::frequency_l2)
        .def_readwrite("learning_rate", &afm::TrainConfig::learning_rate)
        .def_readwrite("adam_beta1", &afm::TrainConfig::adam_beta1)
        .def_readwrite("adam_beta2", &afm::TrainConfig::adam_beta2)
        .def_readwrite("adam_eps", &afm::TrainConfig::adam_eps)
        .def_readwrite("batch_size", &afm::TrainConfig::batch_size)
        .def_readwrite("seed", &afm::TrainConfig::seed)
        .def_readwrite("epoch", &afm::TrainConfig::epoch)
        .def_readwrite("n_threads", &afm::TrainConfig::n_threads)
        .def_readwrite("bf16", &afm::TrainConfig::bf16);

    py::class_<PyTrainer>(mod, "Trainer",
                          "The core's trainer of one fit: it views `params` and the optimizer `state` (updated in\n"
                          "place) and keeps its work memory across train_epoch calls (an epoch, or one block of a\n"
                          "streamed cache), growing it only for longer rows. `state` holds the optimizer's slots,\n"
                          "{slot: dict of arrays shaped like params}: {} for sgd, {'G': ...} for adagrad, {'m': ...,\n"
                          "'v': ..., 'step': {'w': (n_features,), 'w0': (1,)}} for adam (docs/model.md).\n"
                          "`feature_counts` (float32, n_features): each feature's n_i for config.frequency_l2\n"
                          "(required when it is > 0).")
        .def(py::init(&make_trainer), "params"_a, "state"_a, "config"_a, "feature_counts"_a = py::none())
        .def(
            "train_epoch",
            [](PyTrainer& self, const py::array& indptr, const py::array& indices, const py::array& values,
               const py::array& y, const py::array& order, uint64_t seed, uint64_t epoch, const py::object& progress,
               double progress_interval, const py::object& weights) {
                if (self.busy) throw std::runtime_error("this Trainer is already training in another thread");
                check_labels(y, self.loss);
                self.busy = true;
                struct Idle {
                    bool& busy;
                    ~Idle() { busy = false; }
                } idle{self.busy};
                self.trainer->set_stream(seed, epoch);
                return run_epoch(*self.trainer, self.m, self.viewed, indptr, indices, values, y, order, progress,
                                 progress_interval, weights);
            },
            "indptr"_a, "indices"_a, "values"_a, "y"_a, "order"_a, "seed"_a, "epoch"_a, "progress"_a = py::none(),
            "progress_interval"_a = 0.1, "weights"_a = py::none(),
            "Train one epoch in place over the rows `order` of these CSR rows (mini-batches of\n"
            "config.batch_size), with the dropout stream (seed, epoch). Returns a dict with loss_sum (summed data\n"
            "loss), n_rows, n_batches, stopped and diverged (a batch's loss was not finite: the epoch stopped\n"
            "before that batch's update). Every `progress_interval` seconds, between batches, pending signals are\n"
            "handled (KeyboardInterrupt is raised after the batch in progress) and `progress(rows_done)` is called;\n"
            "a falsy return (False, np.False_, 0, an empty container) stops the epoch, None or a truthy one\n"
            "continues, and an exception it raises stops the epoch and is raised here. Arrays that share memory\n"
            "with a written one (params, state) are refused. `weights` (float32, one finite weight >= 0 per row of\n"
            "X, or None for all 1) multiplies each row's loss and gradient.");

    mod.def("scratch_bytes", &afm::block_scratch_bytes, "max_row_nnz"_a, "k"_a, "t"_a, "n_threads"_a,
            "attention"_a = true,
            "Bytes of block scratch (pair tiles, per-row and per-non-zero buffers) that training or prediction\n"
            "reserves on n_threads threads for rows of up to max_row_nnz non-zeros (the memory checks use it):\n"
            "O(tile (k + t) + max_row_nnz k) per thread; rows of more pairs than a block are streamed.");
    mod.def(
        "optimizer_slots",
        [](afm::Optimizer kind) { return optimizer_slot_names(kind); },
        "optimizer"_a,
        "The names of the optimizer's state slots, in order ([] for sgd, ['G'] for adagrad, ['m', 'v', 'step']\n"
        "for adam).");
}

}  // namespace afm::binding
