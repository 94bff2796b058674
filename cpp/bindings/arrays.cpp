// The binding's argument checks (arrays.hpp): every message names the argument and the problem.
#include "arrays.hpp"

#include <algorithm>
#include <climits>
#include <cmath>

namespace afm::binding {

namespace {

py::array param(const py::dict& d, const char* key, const std::string& what) {
    if (!d.contains(key)) throw py::value_error(what + " is missing the array '" + key + "'");
    py::object value = d[key];
    if (!py::isinstance<py::array>(value))
        throw py::type_error(what + "['" + key + "'] must be a numpy array, got " +
                             std::string(py::str(py::type::handle_of(value).attr("__name__"))));
    return py::reinterpret_borrow<py::array>(value);
}

void check_same_shapes(const afm::ModelView& a, const afm::ModelView& b) {
    if (a.n_features != b.n_features || a.k != b.k || a.t != b.t || a.n_fields != b.n_fields ||
        a.field_weighted() != b.field_weighted() || (a.S != nullptr) != (b.S != nullptr))
        throw py::value_error("optimizer state and model have different shapes");
}

// The step counts of an optimizer that counts steps (Adam): a dict of exactly w (n_features,) (one count per
// row of V and w) and w0 (1,) (the dense parameters' count), float32, every count finite and >= 0.
void step_counts(const py::dict& d, const afm::ModelView& m, afm::OptimizerState& opt, Viewed& viewed) {
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

}  // namespace

std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

void Viewed::check_no_aliasing(const Viewed* also) const {
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
    if (d.contains("R")) {  // FwFM's field-pair weights (an optimizer slot holds its state of R likewise)
        py::array R = param(d, "R", what);
        if (R.ndim() != 2 || R.shape(0) < 1 || R.shape(0) > INT_MAX)
            throw py::value_error(what + "['R'] must be a square 2-D array of at least one field, got shape " +
                                  shape_str(R));
        m.n_fields = static_cast<int>(R.shape(0));
        m.R = view(R, "R", {m.n_fields, m.n_fields});
    }
    if (d.contains("S")) {  // field-aware AFM's field-pair logit terms (R's shape where both are there)
        py::array S = param(d, "S", what);
        if (S.ndim() != 2 || S.shape(0) < 1 || S.shape(0) > INT_MAX)
            throw py::value_error(what + "['S'] must be a square 2-D array of at least one field, got shape " +
                                  shape_str(S));
        if (m.R && S.shape(0) != m.n_fields)
            throw py::value_error(what + "['S'] has " + std::to_string(S.shape(0)) + " fields but 'R' has " +
                                  std::to_string(m.n_fields));
        m.n_fields = static_cast<int>(S.shape(0));
        m.S = view(S, "S", {m.n_fields, m.n_fields});
    }
    return m;
}

void check_field_pooling(const afm::ModelView& m, bool attention, const std::string& what) {
    if (m.S && !attention)
        throw py::value_error(what + " has field-pair logit terms 'S' (field-aware AFM): attention must be True");
}

void model_fields(const py::dict& d, afm::ModelView& m, const std::string& what, Viewed& viewed) {
    if (!d.contains("field")) {
        if (m.field_aware()) throw py::value_error(what + " has field-pair terms 'R'/'S' but no 'field' array");
        return;
    }
    if (!m.field_aware()) throw py::value_error(what + " has a 'field' array but no field-pair terms 'R' or 'S'");
    py::object value = d["field"];
    if (!py::isinstance<py::array>(value)) throw py::type_error(what + "['field'] must be a numpy array");
    py::array f = py::reinterpret_borrow<py::array>(value);
    const int32_t* ptr = checked<int32_t>(f, what + "['field']", {m.n_features});
    for (int64_t i = 0; i < m.n_features; ++i)
        if (ptr[i] < 0 || ptr[i] >= m.n_fields)
            throw py::value_error(what + "['field'][" + std::to_string(i) + "] = " + std::to_string(ptr[i]) +
                                  " is not a field of R/S (" + std::to_string(m.n_fields) + " fields)");
    viewed.add(f, what + "['field']", false);
    m.field = ptr;
}

const afm::OptimizerSpec& known_optimizer(afm::Optimizer kind) {
    if (static_cast<unsigned>(kind) >= static_cast<unsigned>(afm::kOptimizerCount))
        throw py::value_error("unknown optimizer " + std::to_string(static_cast<int>(kind)));
    return afm::optimizer_spec(kind);
}

std::vector<std::string> optimizer_slot_names(afm::Optimizer kind) {
    const afm::OptimizerSpec& spec = known_optimizer(kind);
    std::vector<std::string> names(spec.slots, spec.slots + spec.n_slots);
    if (spec.has_step_counts()) names.emplace_back(afm::kStepSlot);
    return names;
}

afm::OptimizerState optimizer_state(const py::dict& slots, afm::Optimizer kind, const afm::ModelView& m,
                                    Viewed& viewed) {
    const afm::OptimizerSpec& spec = known_optimizer(kind);
    const std::vector<std::string> names = optimizer_slot_names(kind);
    std::string want;
    for (size_t i = 0; i < names.size(); ++i) want += (i ? ", " : "") + std::string("'") + names[i] + "'";
    for (auto item : slots) {
        const std::string key = py::str(item.first);
        bool known = false;
        for (const std::string& name : names) known = known || key == name;
        if (!known)
            throw py::value_error("optimizer state has a slot '" + key + "' that " + std::string(spec.name) +
                                  " does not have (its slots: [" + want + "])");
    }
    afm::OptimizerState opt;
    opt.kind = kind;
    for (size_t i = 0; i < names.size(); ++i) {
        const std::string& name = names[i];
        if (!slots.contains(name))
            throw py::value_error("optimizer state is missing the slot '" + name + "'");
        py::object d = slots[name.c_str()];
        if (!py::isinstance<py::dict>(d))
            throw py::type_error("optimizer state slot '" + name + "' must be a dict of arrays");
        if (name == afm::kStepSlot) {
            step_counts(d.cast<py::dict>(), m, opt, viewed);
            continue;
        }
        afm::ModelView v = model_view(d.cast<py::dict>(), "state['" + name + "']", true, viewed);
        check_same_shapes(m, v);
        opt.slot[i] = v;  // names lists the slots shaped like the model first, in the table's order
    }
    return opt;
}

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
    known_optimizer(c.optimizer);  // a known optimizer (an enum made from any int, _core.Optimizer(7), is not)
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

void check_labels(const py::array& y, afm::Loss loss) {
    if (y.ndim() != 1 || !py::isinstance<py::array_t<float>>(y)) return;
    const auto* data = static_cast<const char*>(y.data());
    for (py::ssize_t i = 0; i < y.shape(0); ++i) {
        const float v = *reinterpret_cast<const float*>(data + i * y.strides(0));
        if (loss == afm::Loss::logistic && !(v >= -1.0f && v <= 1.0f))
            throw py::value_error("y[" + std::to_string(i) + "] = " + std::to_string(v) +
                                  ": the logistic loss needs labels in [-1, 1] (+1 / -1, or 2 rate - 1)");
        if (!std::isfinite(v))
            throw py::value_error("y[" + std::to_string(i) + "] = " + std::to_string(v) +
                                  ": the squared loss needs finite targets");
    }
}

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

}  // namespace afm::binding
