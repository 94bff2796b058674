// The binding's checks of its arguments, shared by every file of cpp/bindings: each converts NumPy arrays (or
// dicts of them) to the kernels' raw views and checks dtype, C order, shape, index bounds and values *before*
// the caller releases the GIL (the kernels trust their inputs). Errors are ValueError/TypeError naming the
// argument. Viewed holds a reference to every array a call views and refuses aliasing of written arrays.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "afm/common.hpp"
#include "afm/model.hpp"

namespace afm::binding {

namespace py = pybind11;

std::string shape_str(const py::array& a);

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
    void check_no_aliasing(const Viewed* also = nullptr) const;

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

// A model (or optimizer state) given as a dict of float32 arrays w0 (1,), w (n,), V (n,k), W (t,k), b, h (t,), p (k,).
// Each array viewed is added to `viewed` (under the name what['key']), as written when `writable`.
afm::ModelView model_view(const py::dict& d, const std::string& what, bool writable, Viewed& viewed);

// The field of every feature, d['field'] (int32, n_features, each in [0, n_fields)), into m.field: required
// when the model has field weights R (FwFM), refused otherwise.
void model_fields(const py::dict& d, afm::ModelView& m, const std::string& what, Viewed& viewed);
// R pools with either pooling (FwFM: uniform; field-aware AFM: attention); S is an attention logit term only.
void check_field_pooling(const afm::ModelView& m, bool attention, const std::string& what);

// The row of the optimizer table of `kind`; ValueError for a value of no optimizer.
const afm::OptimizerSpec& known_optimizer(afm::Optimizer kind);

// The names of the optimizer's state slots, in order: those shaped like the model, then "step" where it counts
// steps ([] for sgd, ['G'] for adagrad, ['m', 'v', 'step'] for adam).
std::vector<std::string> optimizer_slot_names(afm::Optimizer kind);

// The optimizer state: a dict {slot name: dict of arrays with the model's shapes}, exactly the slots of
// `kind` ({} for sgd, {"G": ...} for adagrad, {"m", "v", "step"} for adam, step with w and w0 only).
// Every viewed array is added to `viewed` (written).
afm::OptimizerState optimizer_state(const py::dict& slots, afm::Optimizer kind, const afm::ModelView& m,
                                    Viewed& viewed);

// CSR arrays: indptr int64 (n_rows+1), indices int32, values float32; every id in [0, n_features).
afm::CsrView csr_view(const py::array& indptr, const py::array& indices, const py::array& values, int64_t n_features,
                      Viewed& viewed);

// Row numbers (int64, 1-D) into rows [0, n_rows), named `name` in errors; sets *count.
const int64_t* row_list(const py::array& rows, const char* name, int64_t n_rows, int64_t* count);

void check_config(const afm::TrainConfig& c);

// The logistic loss reads y as the sign of the class, or 2 rate - 1 for a rate target: anything outside
// [-1, 1] would train silently on garbage;
// a non-finite target of the squared loss would make every parameter NaN. (A y of the wrong dtype or shape
// is left to checked<float>, which names it.)
void check_labels(const py::array& y, afm::Loss loss);

// Per-row sample weights: None (nullptr: every weight 1) or float32 (n_rows,), each finite and >= 0.
const float* row_weights(const py::object& weights, int64_t n_rows);

// The n_i of config.frequency_l2: float32 (n_features,), finite and >= 0; required when frequency_l2 > 0.
const float* feature_counts(const py::object& counts, const afm::TrainConfig& cfg, int64_t n_features,
                            Viewed& viewed);

// A new float32 array of `shape` holding v.
py::array_t<float> to_array(const std::vector<float>& v, std::vector<py::ssize_t> shape);

}  // namespace afm::binding
