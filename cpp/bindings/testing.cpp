// Hooks for tests, benchmarks and fuzzers only (the package never calls them): a training epoch on a fresh
// trainer, one batch's gradients, the dropout factors, the GEMM and optimizer kernels on their own, and the
// knobs that force a block layout or pair tile. They check their arrays like every other entry point.
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "afm/block_kernels.hpp"
#include "afm/common.hpp"
#include "afm/model.hpp"
#include "afm/predict.hpp"
#include "afm/rng.hpp"
#include "afm/team_judge.hpp"
#include "afm/trainer.hpp"
#include "arrays.hpp"
#include "bindings.hpp"
#include "trainer.hpp"

namespace afm::binding {

using namespace pybind11::literals;

void bind_testing(py::module_& mod) {
    mod.def(
        "train_epoch",
        [](const py::dict& params, const py::dict& state, const py::array& indptr, const py::array& indices,
           const py::array& values, const py::array& y, const py::array& order, const afm::TrainConfig& cfg,
           const py::object& progress, double progress_interval, const py::object& weights,
           const py::object& counts) {
            check_config(cfg);
            check_labels(y, cfg.loss);
            // A fresh trainer, its dropout stream cfg's (seed, epoch), held until the call returns.
            const std::unique_ptr<PyTrainer> self = make_trainer(params, state, cfg, counts);
            return run_epoch(*self->trainer, self->m, self->viewed, indptr, indices, values, y, order, progress,
                             progress_interval, weights);
        },
        "params"_a, "state"_a, "indptr"_a, "indices"_a, "values"_a, "y"_a, "order"_a, "config"_a,
        "progress"_a = py::none(), "progress_interval"_a = 0.1, "weights"_a = py::none(),
        "feature_counts"_a = py::none(),
        "One epoch on a fresh Trainer(params, state, config, feature_counts), with the dropout stream\n"
        "(config.seed, config.epoch): Trainer.train_epoch's result, errors and progress calls.");

    mod.def(
        "set_pair_tile",
        [](int64_t pairs) {
            if (pairs < 0) throw py::value_error("pairs must be >= 0");
            return afm::set_pair_tile(pairs);
        },
        "pairs"_a,
        "From now on blocks hold at most `pairs` pairs and longer rows are streamed through tiles of\n"
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
        "From now on blocks of pairs use the rows layout (E: pairs x k), the pairs-major one (E^T:\n"
        "k x pairs) where k, t <= 32, or ('auto') the one dispatch chooses per instruction set and shape.\n"
        "Results change only by float rounding. Returns the previous setting.");
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
        "gemm_bf16",
        [](const py::array& A, const py::array& B) {
            const afm::IsaKernels* bf16 = afm::bf16_kernels();
            if (!bf16) throw py::value_error(afm::kBf16Missing);
            const py::ssize_t M = A.ndim() == 2 ? A.shape(0) : -1, K = A.ndim() == 2 ? A.shape(1) : -1;
            const float* a = checked<float>(A, "A", {M, K});
            const float* b = checked<float>(B, "B", {K, -1});
            const py::ssize_t N = B.shape(1);
            py::array_t<float> C({M, N});
            bf16->gemm(M, N, K, a, K, 1, b, N, C.mutable_data(), N, nullptr, false);
            return C;
        },
        "A"_a, "B"_a, "A @ B with bf16 mode's GEMM kernel (inputs rounded to bf16, float32 sums).");
    mod.def(
        "predict_bf16",
        [](const py::dict& params, const py::array& indptr, const py::array& indices, const py::array& values,
           int n_threads) {
            Viewed viewed;
            afm::ModelView m = model_view(params, "params", false, viewed);
            afm::CsrView X = csr_view(indptr, indices, values, m.n_features, viewed);
            py::array_t<float> out(X.n_rows);
            float* o = out.mutable_data();
            {
                py::gil_scoped_release nogil;
                afm::predict_bf16(m, X, true, o, n_threads);
            }
            return out;
        },
        "params"_a, "indptr"_a, "indices"_a, "values"_a, "n_threads"_a = 0,
        "AFM's raw outputs as training's forward computes them in precision='bf16' (a bf16-trained model predicts\n"
        "with predict, in float32).");

    mod.def(
        "batch_gradients",
        [](const py::dict& params, const py::array& indptr, const py::array& indices, const py::array& values,
           const py::array& y, const py::array& rows, const afm::TrainConfig& cfg, bool use_dropout,
           const py::object& weights, const py::object& counts) {
            check_config(cfg);
            check_labels(y, cfg.loss);
            Viewed viewed;  // held until the call returns (nothing is written: no aliasing to check)
            afm::ModelView m = model_view(params, "params", false, viewed);
            model_fields(params, m, "params", viewed);
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
            py::dict out("objective"_a = g.objective, "w0"_a = g.dense.w0, "W"_a = to_array(W, {t, k}),
                         "b"_a = to_array(b, {t}), "h"_a = to_array(h, {t}), "p"_a = to_array(p, {k}),
                         "touched"_a = touched, "V"_a = to_array(g.dV, {nt, k}), "w"_a = to_array(g.dw, {nt}));
            const py::ssize_t F = m.n_fields;  // field-pair terms' gradients (both triangles)
            if (m.R) out["R"] = to_array(std::vector<float>(g.dense.R(), g.dense.R() + F * F), {F, F});
            if (m.S) out["S"] = to_array(std::vector<float>(g.dense.S(), g.dense.S() + F * F), {F, F});
            return out;
        },
        "params"_a, "indptr"_a, "indices"_a, "values"_a, "y"_a, "rows"_a, "config"_a, "use_dropout"_a = false,
        "weights"_a = py::none(), "feature_counts"_a = py::none(),
        "Objective J and its gradient over `rows` taken as one mini-batch (the training step's own code path),\n"
        "each row's loss times its `weights` entry (None: all 1).\n"
        "Sparse gradients are given for the distinct `touched` ids only (rows of V and w).");

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
            float* const slot[] = {ac};
            afm::UpdateStep s;
            s.lr = lr;
            afm::kernels().update_of(afm::Optimizer::adagrad)(th, slot, g, n, s);
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
            afm::UpdateStep s;
            s.lr = lr;
            afm::kernels().update_of(afm::Optimizer::sgd)(th, nullptr, g, n, s);
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
            float* const slot[] = {mm, vv};
            afm::UpdateStep s;
            s.lr = lr;
            s.adam = afm::adam_coefficients(beta1, beta2, eps, lr, step);
            afm::kernels().update_of(afm::Optimizer::adam)(th, slot, g, n, s);
        },
        "theta"_a.noconvert(), "m"_a.noconvert(), "v"_a.noconvert(), "grad"_a, "learning_rate"_a, "step"_a,
        "beta1"_a, "beta2"_a, "eps"_a,
        "In place, one Adam step at step count `step` (>= 1): m = beta1 m + (1-beta1) grad;\n"
        "v = beta2 v + (1-beta2) grad**2; theta -= learning_rate (m / (1-beta1**step)) /\n"
        "(sqrt(v / (1-beta2**step)) + eps).");

    mod.def(
        "team_judge",
        [](const std::vector<std::tuple<double, double, double>>& calls, const std::string& mode) {
            const afm::team::Mode force = mode == "alternate" ? afm::team::Mode::alternate
                                          : mode == "team"    ? afm::team::Mode::team
                                          : mode == "adaptive"
                                              ? afm::team::Mode::adaptive
                                              : throw py::value_error("mode must be adaptive, alternate or team");
            afm::TeamJudge judge(force);
            std::vector<bool> team;
            for (const auto& [wall, cpu, units] : calls) {
                team.push_back(judge.team_next());
                if (team.back())
                    judge.team_call(wall, cpu, units);
                else
                    judge.solo_call(wall, cpu, units);
            }
            return team;
        },
        "calls"_a, "mode"_a = "adaptive",
        "A serving Predictor's TeamJudge fed `calls` (wall seconds, CPU seconds: the team's threads' CPU in\n"
        "chunks, or the calling thread's alone; work units, 0: unknown): for each call, whether the judge ran it\n"
        "on the team.");
}

}  // namespace afm::binding
