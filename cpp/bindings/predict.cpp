// Prediction from Python: the model's outputs and its attention weights over CSR rows.
#include <cstdint>
#include <string>

#include "afm/common.hpp"
#include "afm/predict.hpp"
#include "arrays.hpp"
#include "bindings.hpp"

namespace afm::binding {

using namespace pybind11::literals;

void bind_predict(py::module_& mod) {
    mod.def(
        "predict",
        [](const py::dict& params, const py::array& indptr, const py::array& indices, const py::array& values,
           bool attention, int n_threads) {
            if (n_threads < 0) throw py::value_error("n_threads must be >= 0");
            Viewed viewed;  // held until the call returns (the output is a new array: no aliasing to check)
            afm::ModelView m = model_view(params, "params", false, viewed);
            model_fields(params, m, "params", viewed);
            check_field_pooling(m, attention, "params");
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
            model_fields(params, m, "params", viewed);
            check_field_pooling(m, attention, "params");
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

}

}  // namespace afm::binding
