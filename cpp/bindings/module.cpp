// The only file that knows Python: converts NumPy arrays to raw views, checks every shape, dtype and
// index bound *before* releasing the GIL (the kernels trust their inputs), then runs the kernels with
// the GIL released. Errors become ValueError/TypeError; nothing C++ throws escapes an OpenMP region.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <climits>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>

#include "afm/block_kernels.hpp"
#include "afm/common.hpp"
#include "afm/libfm.hpp"
#include "afm/model.hpp"
#include "afm/predict.hpp"
#include "afm/rng.hpp"
#include "afm/trainer.hpp"

namespace py = pybind11;
using namespace pybind11::literals;

namespace {

std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

// Checks dtype, C order and shape (-1 = any) of an array argument; returns its data pointer.
template <class T>
T* checked(const py::array& a, const std::string& name, std::initializer_list<py::ssize_t> shape,
           bool writable = false) {
    if (!py::isinstance<py::array_t<T>>(a))  // dtype equivalence (not identity: unpickled dtypes are new objects)
        throw py::type_error(name + " must have dtype " + std::string(py::str(py::dtype::of<T>())) + ", got " +
                             std::string(py::str(a.dtype())));
    if (!(a.flags() & py::array::c_style)) throw py::value_error(name + " must be C-contiguous");
    if (a.ndim() != static_cast<py::ssize_t>(shape.size()))
        throw py::value_error(name + " must be " + std::to_string(shape.size()) + "-D, got shape " + shape_str(a));
    py::ssize_t i = 0;
    for (py::ssize_t want : shape) {
        if (want >= 0 && a.shape(i) != want)
            throw py::value_error(name + " has shape " + shape_str(a) + ", dimension " + std::to_string(i) +
                                  " should be " + std::to_string(want));
        ++i;
    }
    if (writable && !a.writeable()) throw py::value_error(name + " must be writable");
    return static_cast<T*>(const_cast<void*>(a.data()));
}

// Every array a core call views, each with a reference held for the whole call (or, for a Trainer, for its
// life): the GIL is released while the kernels run, and another thread, or a progress callback, may replace
// a dict's entry (params["V"] = ...) and drop the last other reference to memory in use. Also the check that
// no array the call writes shares memory with another array it views: the kernels take them as __restrict__.
class Viewed {
public:
    void add(const py::array& a, std::string name, bool written) {
        const char* lo = static_cast<const char*>(a.data());
        entries_.push_back({a, std::move(name), lo, lo + a.nbytes(), written});
    }
    // ValueError naming the first two arrays found that share memory, at least one of them written.
    void check_no_aliasing(const Viewed* also = nullptr) const {
        std::vector<const Entry*> all;
        for (const Entry& e : entries_) all.push_back(&e);
        if (also)
            for (const Entry& e : also->entries_) all.push_back(&e);
        for (size_t i = 0; i < all.size(); ++i)
            for (size_t j = i + 1; j < all.size(); ++j) {
                const Entry &a = *all[i], &b = *all[j];
                if ((a.written || b.written) && a.lo < a.hi && b.lo < b.hi && a.lo < b.hi && b.lo < a.hi)
                    throw py::value_error(a.name + " and " + b.name + " share memory (the same or overlapping "
                                          "buffers): the core writes " + (a.written ? a.name : b.name) +
                                          " in place, so each must be an array of its own (pass a copy)");
            }
    }

private:
    struct Entry {
        py::array ref;
        std::string name;
        const char* lo;
        const char* hi;
        bool written;
    };
    std::vector<Entry> entries_;
};

py::array param(const py::dict& d, const char* key, const std::string& what) {
    if (!d.contains(key)) throw py::value_error(what + " is missing the array '" + key + "'");
    py::object value = d[key];
    if (!py::isinstance<py::array>(value))
        throw py::type_error(what + "['" + key + "'] must be a numpy array, got " +
                             std::string(py::str(py::type::handle_of(value).attr("__name__"))));
    return py::reinterpret_borrow<py::array>(value);
}

// A model (or optimizer state) given as a dict of float32 arrays w0 (1,), w (n,), V (n,k), W (t,k), b, h (t,), p (k,).
// Each array viewed is added to `viewed` (under the name what['key']), as written when `writable`.
afm::ModelView model_view(const py::dict& d, const std::string& what, bool writable, Viewed& viewed) {
    afm::ModelView m;
    py::array V = param(d, "V", what), W = param(d, "W", what);
    if (V.ndim() != 2 || W.ndim() != 2) throw py::value_error(what + ": V and W must be 2-D");
    if (V.shape(1) > INT_MAX || W.shape(0) > INT_MAX)
        throw py::value_error(what + ": embedding and attention sizes must fit in int32");
    m.n_features = V.shape(0);
    m.k = static_cast<int>(V.shape(1));
    m.t = static_cast<int>(W.shape(0));
    if (m.k <= 0 || m.t <= 0) throw py::value_error(what + ": embedding and attention sizes must be positive");
    auto view = [&](const py::array& a, const char* key, std::initializer_list<py::ssize_t> shape) {
        const std::string name = what + "['" + key + "']";
        float* ptr = checked<float>(a, name, shape, writable);
        viewed.add(a, name, writable);
        return ptr;
    };
    m.V = view(V, "V", {m.n_features, m.k});
    m.W = view(W, "W", {m.t, m.k});
    m.w0 = view(param(d, "w0", what), "w0", {1});
    m.w = view(param(d, "w", what), "w", {m.n_features});
    m.b = view(param(d, "b", what), "b", {m.t});
    m.h = view(param(d, "h", what), "h", {m.t});
    m.p = view(param(d, "p", what), "p", {m.k});
    return m;
}

void check_same_shapes(const afm::ModelView& a, const afm::ModelView& b) {
    if (a.n_features != b.n_features || a.k != b.k || a.t != b.t)
        throw py::value_error("optimizer state and model have different shapes");
}

const char* optimizer_name(afm::Optimizer kind) {
    return kind == afm::Optimizer::adagrad ? "adagrad" : kind == afm::Optimizer::adam ? "adam" : "sgd";
}

// Adam's step counts: a dict of exactly w (n_features,) (one count per row of V and w) and w0 (1,) (the
// dense parameters' count), float32, every count finite and >= 0.
void adam_steps(const py::dict& d, const afm::ModelView& m, afm::OptimizerState& opt, Viewed& viewed) {
    for (auto item : d) {
        const std::string key = py::str(item.first);
        if (key != "w" && key != "w0")
            throw py::value_error("optimizer slot step has an array '" + key + "': it holds only 'w' and 'w0'");
    }
    const py::array rows = param(d, "w", "optimizer slot step"), dense = param(d, "w0", "optimizer slot step");
    opt.row_step = checked<float>(rows, "optimizer slot step['w']", {m.n_features}, true);
    opt.dense_step = checked<float>(dense, "optimizer slot step['w0']", {1}, true);
    viewed.add(rows, "state['step']['w']", true);
    viewed.add(dense, "state['step']['w0']", true);
    for (int64_t i = 0; i <= m.n_features; ++i) {
        const float c = i < m.n_features ? opt.row_step[i] : *opt.dense_step;
        if (!(c >= 0.0f) || !std::isfinite(c))
            throw py::value_error("optimizer slot step holds a step count that is negative or not finite");
    }
}

// The optimizer state: a dict {slot name: dict of arrays with the model's shapes}, exactly the slots of
// `kind` ({} for sgd, {"G": ...} for adagrad, {"m", "v", "step"} for adam, step with w and w0 only).
// Every viewed array is added to `viewed` (written).
afm::OptimizerState optimizer_state(const py::dict& slots, afm::Optimizer kind, const afm::ModelView& m,
                                    Viewed& viewed) {
    int count = 0;
    const char* const* names = afm::optimizer_slots(kind, &count);
    std::string want;
    for (int i = 0; i < count; ++i) want += (i ? ", " : "") + std::string("'") + names[i] + "'";
    for (auto item : slots) {
        const std::string key = py::str(item.first);
        bool known = false;
        for (int i = 0; i < count; ++i) known = known || key == names[i];
        if (!known)
            throw py::value_error("optimizer state has a slot '" + key + "' that " +
                                  std::string(optimizer_name(kind)) + " does not have (its slots: [" + want + "])");
    }
    afm::OptimizerState opt;
    opt.kind = kind;
    for (int i = 0; i < count; ++i) {
        if (!slots.contains(names[i]))
            throw py::value_error(std::string("optimizer state is missing the slot '") + names[i] + "'");
        py::object d = slots[names[i]];
        if (!py::isinstance<py::dict>(d))
            throw py::type_error(std::string("optimizer state slot '") + names[i] + "' must be a dict of arrays");
        const std::string name = names[i];
        if (name == "step") {
            adam_steps(d.cast<py::dict>(), m, opt, viewed);
            continue;
        }
        afm::ModelView v = model_view(d.cast<py::dict>(), "state['" + name + "']", true, viewed);
        check_same_shapes(m, v);
        (name == "G" ? opt.G : name == "m" ? opt.m : opt.v) = v;
    }
    return opt;
}

// CSR arrays: indptr int64 (n_rows+1), indices int32, values float32; every id in [0, n_features).
afm::CsrView csr_view(const py::array& indptr, const py::array& indices, const py::array& values, int64_t n_features,
                      Viewed& viewed) {
    afm::CsrView X;
    const int64_t* ip = checked<int64_t>(indptr, "indptr", {-1});
    if (indptr.shape(0) < 1) throw py::value_error("indptr must have at least one element");
    const int64_t n_rows = indptr.shape(0) - 1;
    const int64_t nnz = indices.ndim() == 1 ? indices.shape(0) : -1;
    X.indices = checked<afm::feature_t>(indices, "indices", {-1});
    X.values = checked<float>(values, "values", {nnz});
    viewed.add(indptr, "indptr", false);
    viewed.add(indices, "indices", false);
    viewed.add(values, "values", false);
    if (ip[0] != 0) throw py::value_error("indptr[0] must be 0");
    for (int64_t r = 0; r < n_rows; ++r)
        if (ip[r + 1] < ip[r]) throw py::value_error("indptr must be non-decreasing (row " + std::to_string(r) + ")");
    if (ip[n_rows] != nnz)
        throw py::value_error("indptr[-1] = " + std::to_string(ip[n_rows]) + " but there are " + std::to_string(nnz) +
                              " indices");
    for (int64_t j = 0; j < nnz; ++j) {
        const int64_t f = X.indices[j];
        if (f < 0 || f >= n_features)
            throw py::value_error("feature id " + std::to_string(f) + " is out of range [0, " +
                                  std::to_string(n_features) + ")");
    }
    X.indptr = ip;
    X.n_rows = n_rows;
    return X;
}

const int64_t* row_list(const py::array& rows, const char* name, int64_t n_rows, int64_t* count) {
    const int64_t* r = checked<int64_t>(rows, name, {-1});
    *count = rows.shape(0);
    for (int64_t i = 0; i < *count; ++i)
        if (r[i] < 0 || r[i] >= n_rows)
            throw py::value_error(std::string(name) + " holds row " + std::to_string(r[i]) + ", outside [0, " +
                                  std::to_string(n_rows) + ")");
    return r;
}

void check_config(const afm::TrainConfig& c) {
    if (!(c.learning_rate > 0.0f) || !std::isfinite(c.learning_rate))
        throw py::value_error("learning_rate must be a positive finite number");
    if (!(c.dropout >= 0.0f && c.dropout < 1.0f)) throw py::value_error("dropout must be in [0, 1)");
    if (!(c.attention_l2 >= 0.0f) || !(c.l2 >= 0.0f) || !std::isfinite(c.attention_l2) || !std::isfinite(c.l2))
        throw py::value_error("L2 strengths must be finite and >= 0");
    if (!(c.frequency_l2 >= 0.0f) || !std::isfinite(c.frequency_l2))
        throw py::value_error("frequency_l2 must be finite and >= 0");
    if (c.batch_size <= 0) throw py::value_error("batch_size must be positive");
    if (!(c.adam_beta1 >= 0.0 && c.adam_beta1 < 1.0) || !(c.adam_beta2 >= 0.0 && c.adam_beta2 < 1.0))
        throw py::value_error("adam_beta1 and adam_beta2 must be in [0, 1)");
    if (!(c.adam_eps > 0.0) || !std::isfinite(c.adam_eps)) throw py::value_error("adam_eps must be positive and finite");
    if (c.n_threads < 0) throw py::value_error("n_threads must be >= 0");
}

// The logistic loss reads y as the sign of the class: anything but +1 / -1 would train silently on garbage;
// a non-finite target of the squared loss would make every parameter NaN. (A y of the wrong dtype or shape
// is left to checked<float>, which names it.)
void check_labels(const py::array& y, afm::Loss loss) {
    if (y.ndim() != 1 || !py::isinstance<py::array_t<float>>(y)) return;
    const auto* data = static_cast<const char*>(y.data());
    for (py::ssize_t i = 0; i < y.shape(0); ++i) {
        const float v = *reinterpret_cast<const float*>(data + i * y.strides(0));
        if (loss == afm::Loss::logistic && v != 1.0f && v != -1.0f)
            throw py::value_error("y[" + std::to_string(i) + "] = " + std::to_string(v) +
                                  ": the logistic loss needs labels +1 or -1");
        if (!std::isfinite(v))
            throw py::value_error("y[" + std::to_string(i) + "] = " + std::to_string(v) +
                                  ": the squared loss needs finite targets");
    }
}

// Per-row sample weights: None (nullptr: every weight 1) or float32 (n_rows,), each finite and >= 0.
const float* row_weights(const py::object& weights, int64_t n_rows) {
    if (weights.is_none()) return nullptr;
    const float* w = checked<float>(py::reinterpret_borrow<py::array>(weights), "weights", {n_rows});
    for (int64_t i = 0; i < n_rows; ++i)
        if (!(w[i] >= 0.0f) || !std::isfinite(w[i]))
            throw py::value_error("weights[" + std::to_string(i) + "] = " + std::to_string(w[i]) +
                                  ": sample weights must be finite and >= 0");
    return w;
}

py::array_t<float> to_array(const std::vector<float>& v, std::vector<py::ssize_t> shape) {
    py::array_t<float> out(shape);
    std::copy(v.begin(), v.end(), out.mutable_data());
    return out;
}

// (indptr, indices, values, labels, max_feature_id) of a parsed libFM text, as NumPy arrays.
py::tuple libfm_tuple(const afm::LibfmData& data) {
    auto arr = [](const auto& v) {
        using T = typename std::decay_t<decltype(v)>::value_type;
        py::array_t<T> out(static_cast<py::ssize_t>(v.size()));
        std::copy(v.begin(), v.end(), out.mutable_data());
        return out;
    };
    return py::make_tuple(arr(data.indptr), arr(data.indices), arr(data.values), arr(data.labels),
                          data.max_feature_id);
}

// The n_i of config.frequency_l2: float32 (n_features,), finite and >= 0; required when frequency_l2 > 0.
const float* feature_counts(const py::object& counts, const afm::TrainConfig& cfg, int64_t n_features,
                            Viewed& viewed) {
    if (counts.is_none()) {
        if (cfg.frequency_l2 > 0.0f)
            throw py::value_error("frequency_l2 > 0 needs feature_counts (each feature's occurrences in the rows)");
        return nullptr;
    }
    const py::array a = py::reinterpret_borrow<py::array>(counts);
    const float* c = checked<float>(a, "feature_counts", {n_features});
    viewed.add(a, "feature_counts", false);
    for (int64_t i = 0; i < n_features; ++i)
        if (!(c[i] >= 0.0f) || !std::isfinite(c[i]))
            throw py::value_error("feature_counts[" + std::to_string(i) + "] must be finite and >= 0");
    return c;
}

// A Trainer with the arrays it views (held for its life) and a guard against two threads training it at once.
struct PyTrainer {
    afm::ModelView m;
    Viewed viewed;  // params and optimizer slots
    std::unique_ptr<afm::Trainer> trainer;
    bool busy = false;
    afm::Loss loss = afm::Loss::squared;
};

// One Trainer::run_epoch over CSR arrays from Python, checked first, with the GIL released. `model` holds the
// arrays the trainer writes: none of the data arrays may share memory with them.
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

}  // namespace

PYBIND11_MODULE(_core, mod) {
    mod.doc() = "fastafm compiled core: AFM training, prediction and libFM parsing kernels";
    mod.attr("__version__") = FASTAFM_VERSION;

    mod.def("openmp_enabled", &afm::openmp_enabled, "True when the core was built with OpenMP.");
    mod.def("resolve_threads", &afm::resolve_threads, "requested"_a,
            "Number of threads a kernel uses for `requested` (0 = all cores).");

    py::enum_<afm::Loss>(mod, "Loss").value("squared", afm::Loss::squared).value("logistic", afm::Loss::logistic);
    py::enum_<afm::Optimizer>(mod, "Optimizer")
        .value("adagrad", afm::Optimizer::adagrad)
        .value("sgd", afm::Optimizer::sgd)
        .value("adam", afm::Optimizer::adam);

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
        .def_readwrite("n_threads", &afm::TrainConfig::n_threads);

    mod.def(
        "train_epoch",
        [](const py::dict& params, const py::dict& state, const py::array& indptr, const py::array& indices,
           const py::array& values, const py::array& y, const py::array& order, const afm::TrainConfig& cfg,
           const py::object& progress, double progress_interval, const py::object& weights,
           const py::object& counts) {
            check_config(cfg);
            check_labels(y, cfg.loss);
            Viewed model;  // held until the call returns
            afm::ModelView m = model_view(params, "params", true, model);
            afm::OptimizerState opt = optimizer_state(state, cfg.optimizer, m, model);
            const float* n_i = feature_counts(counts, cfg, m.n_features, model);
            model.check_no_aliasing();
            std::unique_ptr<afm::Trainer> trainer;
            {
                py::gil_scoped_release nogil;
                trainer = std::make_unique<afm::Trainer>(m, opt, cfg);
                trainer->set_feature_counts(n_i);
            }
            return run_epoch(*trainer, m, model, indptr, indices, values, y, order, progress, progress_interval,
                             weights);
        },
        "params"_a, "state"_a, "indptr"_a, "indices"_a, "values"_a, "y"_a, "order"_a, "config"_a,
        "progress"_a = py::none(), "progress_interval"_a = 0.1, "weights"_a = py::none(),
        "feature_counts"_a = py::none(),
        "Train one epoch in place over the rows `order` (mini-batches of config.batch_size). `state` holds the\n"
        "optimizer's slots, {slot: dict of arrays shaped like params}: {} for sgd, {'G': ...} for adagrad,\n"
        "{'m': ..., 'v': ..., 'step': {'w': (n_features,), 'w0': (1,)}} for adam (docs/model.md).\n"
        "Returns a dict with loss_sum (summed data loss), n_rows, n_batches, stopped and diverged (a batch's\n"
        "loss was not finite: the epoch stopped before that batch's update). Every `progress_interval`\n"
        "seconds, between batches, pending signals are handled (KeyboardInterrupt is raised after the batch in\n"
        "progress) and `progress(rows_done)` is called; a falsy return (False, np.False_, 0, an empty container)\n"
        "stops the epoch, None or a truthy one continues, and an exception it raises stops the epoch and is\n"
        "raised here. Arrays that share memory with a written one (params, state) are refused. `weights`\n"
        "(float32, one finite weight >= 0 per row of X, or None for all 1) multiplies each row's loss and\n"
        "gradient. `feature_counts` (float32, n_features): each feature's n_i for config.frequency_l2 (required\n"
        "when it is > 0).");

    py::class_<PyTrainer>(mod, "Trainer",
                          "The core's trainer of one fit: it views `params` and the optimizer `state` (updated in\n"
                          "place) and keeps its work memory across train_epoch calls (an epoch, or one block of a\n"
                          "streamed cache), growing it only for longer rows.")
        .def(py::init([](const py::dict& params, const py::dict& state, const afm::TrainConfig& cfg,
                         const py::object& counts) {
                 check_config(cfg);
                 auto self = std::make_unique<PyTrainer>();
                 self->loss = cfg.loss;
                 self->m = model_view(params, "params", true, self->viewed);
                 afm::OptimizerState opt = optimizer_state(state, cfg.optimizer, self->m, self->viewed);
                 const float* n_i = feature_counts(counts, cfg, self->m.n_features, self->viewed);
                 self->viewed.check_no_aliasing();
                 py::gil_scoped_release nogil;
                 self->trainer = std::make_unique<afm::Trainer>(self->m, opt, cfg);
                 self->trainer->set_feature_counts(n_i);
                 return self;
             }),
             "params"_a, "state"_a, "config"_a, "feature_counts"_a = py::none())
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
            "One epoch over the rows `order` of these CSR rows, with the dropout stream (seed, epoch); returns\n"
            "what _core.train_epoch returns.");

    mod.def("scratch_bytes", &afm::block_scratch_bytes, "max_row_nnz"_a, "k"_a, "t"_a, "n_threads"_a,
            "attention"_a = true,
            "Bytes of block scratch (pair tiles, per-row and per-non-zero buffers) that training or prediction\n"
            "reserves on n_threads threads for rows of up to max_row_nnz non-zeros (the memory checks use it):\n"
            "O(tile (k + t) + max_row_nnz k) per thread; rows of more pairs than a block are streamed.");
    mod.def(
        "set_pair_tile",
        [](int64_t pairs) {
            if (pairs < 0) throw py::value_error("pairs must be >= 0");
            return afm::set_pair_tile(pairs);
        },
        "pairs"_a,
        "Tests only: from now on blocks hold at most `pairs` pairs and longer rows are streamed through tiles of\n"
        "`pairs` pairs (0: the defaults). Results change only by float rounding. Returns the previous setting.");
    mod.def(
        "set_pair_layout",
        [](const std::string& layout) {
            static const char* const names[] = {"auto", "rows", "pairs"};
            for (int i = 0; i < 3; ++i)
                if (layout == names[i])
                    return std::string(names[static_cast<int>(afm::set_pair_layout(static_cast<afm::PairLayout>(i)))]);
            throw py::value_error("layout must be 'auto', 'rows' or 'pairs', not '" + layout + "'");
        },
        "layout"_a,
        "Tests only: from now on blocks of pairs use the rows layout (E: pairs x k), the pairs-major one (E^T:\n"
        "k x pairs) where k, t <= 32, or ('auto') the one dispatch chooses per instruction set and shape.\n"
        "Results change only by float rounding. Returns the previous setting.");
    mod.def(
        "pairs_major_from",
        [](int k, int t) { return afm::pairs_major_from(afm::pairs_major_kernels_for(k, t), k, t); }, "k"_a, "t"_a,
        "Rows of at least this many pairs run the pairs-major layout (0: every row, -1: none) for a model with\n"
        "embedding size k and attention size t, now (on kernel_isa(k, t, pairs)'s set; small k and t and long\n"
        "rows, unless set_pair_layout forced a layout).");
    mod.def(
        "optimizer_slots",
        [](afm::Optimizer kind) {
            int count = 0;
            const char* const* names = afm::optimizer_slots(kind, &count);
            std::vector<std::string> out(names, names + count);
            return out;
        },
        "optimizer"_a,
        "The names of the optimizer's state slots, in order ([] for sgd, ['G'] for adagrad, ['m', 'v', 'step']\n"
        "for adam).");

    mod.def("active_isa", &afm::active_isa, "The instruction set the kernels use now (avx512, avx2 or baseline).");
    mod.def(
        "kernel_isa",
        [](int k, int t, int64_t pairs) { return afm::kernels_for_row(k, t, pairs).name; },
        "k"_a, "t"_a, "pairs"_a = 0,
        "The instruction set a row of `pairs` pairs trains and predicts with, for a model with embedding size k\n"
        "and attention size t: the active one, except that k, t <= 8 use avx2 on an avx512 CPU in the rows layout\n"
        "unless a set was forced (it is faster there); rows that run pairs-major (pairs_major_from) stay on avx512.");
    mod.def("supported_isas", &afm::supported_isas, "Instruction sets this build and CPU can use, best first.");
    mod.def(
        "select_isa",
        [](const std::string& name) {
            if (!afm::select_isa(name))
                throw py::value_error("instruction set '" + name + "' is not available here (available: " +
                                      std::string(py::str(py::cast(afm::supported_isas()))) + ")");
        },
        "name"_a, "Use the kernels of instruction set `name` from now on (FASTAFM_ISA sets it at import).");
    mod.def(
        "gemm",
        [](const py::array& A, const py::array& B) {
            const py::ssize_t M = A.ndim() == 2 ? A.shape(0) : -1, K = A.ndim() == 2 ? A.shape(1) : -1;
            const float* a = checked<float>(A, "A", {M, K});
            const float* b = checked<float>(B, "B", {K, -1});
            const py::ssize_t N = B.shape(1);
            py::array_t<float> C({M, N});
            afm::kernels().gemm(M, N, K, a, K, 1, b, N, C.mutable_data(), N, nullptr, false);
            return C;
        },
        "A"_a, "B"_a, "A @ B with the active instruction set's GEMM kernel (float32; for tests and benchmarks).");

    mod.def(
        "batch_gradients",
        [](const py::dict& params, const py::array& indptr, const py::array& indices, const py::array& values,
           const py::array& y, const py::array& rows, const afm::TrainConfig& cfg, bool use_dropout,
           const py::object& weights, const py::object& counts) {
            check_config(cfg);
            check_labels(y, cfg.loss);
            Viewed viewed;  // held until the call returns (nothing is written: no aliasing to check)
            afm::ModelView m = model_view(params, "params", false, viewed);
            afm::CsrView X = csr_view(indptr, indices, values, m.n_features, viewed);
            const float* n_i = feature_counts(counts, cfg, m.n_features, viewed);
            const float* yp = checked<float>(y, "y", {X.n_rows});
            const float* wp = row_weights(weights, X.n_rows);
            if (wp) viewed.add(py::reinterpret_borrow<py::array>(weights), "weights", false);
            int64_t n = 0;
            const int64_t* rp = row_list(rows, "rows", X.n_rows, &n);
            afm::BatchGradients g;
            {
                py::gil_scoped_release nogil;
                afm::Trainer trainer(m, afm::OptimizerState{}, cfg);  // computes gradients only: no slots
                trainer.set_feature_counts(n_i);
                trainer.batch_gradients(X, yp, wp, rp, n, use_dropout, g);
            }
            const py::ssize_t k = m.k, t = m.t, nt = static_cast<py::ssize_t>(g.touched.size());
            std::vector<float> W(g.dense.W(), g.dense.W() + t * k), b(g.dense.b(), g.dense.b() + t),
                h(g.dense.h(), g.dense.h() + t), p(g.dense.p(), g.dense.p() + k);
            py::array_t<int32_t> touched(nt);
            std::copy(g.touched.begin(), g.touched.end(), touched.mutable_data());
            return py::dict("objective"_a = g.objective, "w0"_a = g.dense.w0, "W"_a = to_array(W, {t, k}),
                            "b"_a = to_array(b, {t}), "h"_a = to_array(h, {t}), "p"_a = to_array(p, {k}),
                            "touched"_a = touched, "V"_a = to_array(g.dV, {nt, k}), "w"_a = to_array(g.dw, {nt}));
        },
        "params"_a, "indptr"_a, "indices"_a, "values"_a, "y"_a, "rows"_a, "config"_a, "use_dropout"_a = false,
        "weights"_a = py::none(), "feature_counts"_a = py::none(),
        "Objective J and its gradient over `rows` taken as one mini-batch (the training step's own code path),\n"
        "each row's loss times its `weights` entry (None: all 1).\n"
        "Sparse gradients are given for the distinct `touched` ids only (rows of V and w).");

    mod.def(
        "predict",
        [](const py::dict& params, const py::array& indptr, const py::array& indices, const py::array& values,
           bool attention, int n_threads) {
            if (n_threads < 0) throw py::value_error("n_threads must be >= 0");
            Viewed viewed;  // held until the call returns (the output is a new array: no aliasing to check)
            afm::ModelView m = model_view(params, "params", false, viewed);
            afm::CsrView X = csr_view(indptr, indices, values, m.n_features, viewed);
            py::array_t<float> out(X.n_rows);
            float* o = out.mutable_data();
            {
                py::gil_scoped_release nogil;
                afm::predict(m, X, attention, o, n_threads);
            }
            return out;
        },
        "params"_a, "indptr"_a, "indices"_a, "values"_a, "attention"_a = true, "n_threads"_a = 0,
        "Raw model output y for every CSR row (float32).");

    mod.def(
        "pair_attention",
        [](const py::dict& params, const py::array& indptr, const py::array& indices, const py::array& values,
           const py::array& pair_indptr, bool attention, int n_threads) {
            if (n_threads < 0) throw py::value_error("n_threads must be >= 0");
            Viewed viewed;  // held until the call returns (the output is a new array: no aliasing to check)
            afm::ModelView m = model_view(params, "params", false, viewed);
            afm::CsrView X = csr_view(indptr, indices, values, m.n_features, viewed);
            const int64_t* pp = checked<int64_t>(pair_indptr, "pair_indptr", {X.n_rows + 1});
            viewed.add(pair_indptr, "pair_indptr", false);
            if (pp[0] != 0) throw py::value_error("pair_indptr[0] must be 0");
            for (int64_t r = 0; r < X.n_rows; ++r)
                if (pp[r + 1] - pp[r] != afm::pair_count(X.indptr[r + 1] - X.indptr[r]))
                    throw py::value_error("pair_indptr does not match the rows' pair counts at row " +
                                          std::to_string(r));
            py::array_t<float> out(pp[X.n_rows]);
            float* o = out.mutable_data();
            {
                py::gil_scoped_release nogil;
                afm::pair_attention(m, X, attention, pp, o, n_threads);
            }
            return out;
        },
        "params"_a, "indptr"_a, "indices"_a, "values"_a, "pair_indptr"_a, "attention"_a = true, "n_threads"_a = 0,
        "Attention weight of every pair (r<s, storage order) of every row, concatenated by pair_indptr.");

    mod.def(
        "dropout_mask",
        [](uint64_t seed, uint64_t epoch, const py::array& rows, int k, float rho) {
            if (k <= 0) throw py::value_error("k must be positive");
            if (!(rho >= 0.0f && rho < 1.0f)) throw py::value_error("rho must be in [0, 1)");
            const int64_t* r = checked<int64_t>(rows, "rows", {-1});
            const py::ssize_t n = rows.shape(0);
            py::array_t<float> out({n, static_cast<py::ssize_t>(k)});
            for (py::ssize_t i = 0; i < n; ++i)
                afm::dropout_mask_row(seed, epoch, static_cast<uint64_t>(r[i]), k, rho, out.mutable_data() + i * k);
            return out;
        },
        "seed"_a, "epoch"_a, "rows"_a, "k"_a, "rho"_a,
        "The dropout factors (0 or 1/(1-rho)) that training uses for the given data rows in this epoch.");

    mod.def(
        "adagrad_update_",
        [](const py::array& theta, const py::array& accum, const py::array& grad, float lr) {
            const py::ssize_t n = theta.ndim() == 1 ? theta.shape(0) : -1;
            float* th = checked<float>(theta, "theta", {n}, true);
            float* ac = checked<float>(accum, "accum", {n}, true);
            const float* g = checked<float>(grad, "grad", {n});
            Viewed viewed;
            viewed.add(theta, "theta", true);
            viewed.add(accum, "accum", true);
            viewed.add(grad, "grad", false);
            viewed.check_no_aliasing();
            afm::kernels().adagrad(th, ac, g, n, lr);
        },
        "theta"_a.noconvert(), "accum"_a.noconvert(), "grad"_a, "learning_rate"_a,
        "In place: accum += grad**2; theta -= learning_rate * grad / sqrt(accum).");

    mod.def(
        "sgd_update_",
        [](const py::array& theta, const py::array& grad, float lr) {
            const py::ssize_t n = theta.ndim() == 1 ? theta.shape(0) : -1;
            float* th = checked<float>(theta, "theta", {n}, true);
            const float* g = checked<float>(grad, "grad", {n});
            Viewed viewed;
            viewed.add(theta, "theta", true);
            viewed.add(grad, "grad", false);
            viewed.check_no_aliasing();
            afm::kernels().sgd(th, g, n, lr);
        },
        "theta"_a.noconvert(), "grad"_a, "learning_rate"_a, "In place: theta -= learning_rate * grad.");

    mod.def(
        "adam_update_",
        [](const py::array& theta, const py::array& m, const py::array& v, const py::array& grad, float lr,
           double step, double beta1, double beta2, double eps) {
            const py::ssize_t n = theta.ndim() == 1 ? theta.shape(0) : -1;
            if (!(step >= 1.0) || !std::isfinite(step)) throw py::value_error("step must be a finite count >= 1");
            float* th = checked<float>(theta, "theta", {n}, true);
            float* mm = checked<float>(m, "m", {n}, true);
            float* vv = checked<float>(v, "v", {n}, true);
            const float* g = checked<float>(grad, "grad", {n});
            afm::kernels().adam(th, mm, vv, g, n, afm::adam_coefficients(beta1, beta2, eps, lr, step));
        },
        "theta"_a.noconvert(), "m"_a.noconvert(), "v"_a.noconvert(), "grad"_a, "learning_rate"_a, "step"_a,
        "beta1"_a, "beta2"_a, "eps"_a,
        "In place, one Adam step at step count `step` (>= 1): m = beta1 m + (1-beta1) grad;\n"
        "v = beta2 v + (1-beta2) grad**2; theta -= learning_rate (m / (1-beta1**step)) /\n"
        "(sqrt(v / (1-beta2**step)) + eps).");

    mod.def(
        "parse_libfm_file",
        [](const std::string& path) {
            afm::LibfmData data;
            afm::ParseError err;
            bool ok;
            {
                py::gil_scoped_release nogil;
                ok = afm::parse_libfm_file(path, data, err);
            }
            if (!ok) {
                if (err.line > 0) throw py::value_error(path + ":" + std::to_string(err.line) + ": " + err.message);
                throw py::value_error(path + ": " + err.message);
            }
            return libfm_tuple(data);
        },
        "path"_a,
        "Parse a libFM/libSVM file. Returns (indptr int64, indices int32, values float32, labels float32,\n"
        "max_feature_id); raises ValueError 'path:line: message' on a malformed line.");

    mod.def(
        "parse_libfm_buffer",
        [](const py::buffer& buffer, const std::string& name, int64_t first_line) {
            if (first_line < 1) throw py::value_error("first_line must be >= 1");
            py::buffer_info info = buffer.request();
            if (info.ndim != 1 || info.itemsize != 1 || info.strides[0] != 1)
                throw py::value_error("buffer must be a contiguous 1-D buffer of bytes");
            afm::LibfmData data;
            afm::ParseError err;
            bool ok;
            {
                py::gil_scoped_release nogil;
                ok = afm::parse_libfm(static_cast<const char*>(info.ptr), static_cast<size_t>(info.size), data, err);
            }
            if (!ok) {
                if (err.line > 0)
                    throw py::value_error(name + ":" + std::to_string(first_line + err.line - 1) + ": " + err.message);
                throw py::value_error(name + ": " + err.message);
            }
            return libfm_tuple(data);
        },
        "buffer"_a, "name"_a, "first_line"_a = 1,
        "Parse libFM/libSVM text held in a bytes-like buffer (a chunk of whole lines of a file). Returns what\n"
        "parse_libfm_file returns; a malformed line raises ValueError 'name:line: message', the line counted\n"
        "from `first_line` (the file line the buffer starts at).");
}
