// The optimizers as one table: each is a row of AFM_OPTIMIZERS (its name, its state slots, how its step
// coefficients depend on the step count) plus its update kernel, and nothing else in the trainer, the kernels
// or the binding names an optimizer. Adding one: a row below and update_<name> in cpp/src/isa/optimizers.inc
// (and, if its coefficients change with the step count, a function like adam_at_step in cpp/src/optimizers.cpp);
// Python's optimizer table (python/fastafm/_optim.py) and reference.py hold its other half.
#pragma once
#include <cmath>
#include <cstdint>

namespace afm {

// X(name, slots, at_step), one optimizer a row:
//   name     the value Optimizer::name (values in this order: fastafm._core.Optimizer), the name Python and the
//            model files use, and the update kernel update_<name> that every instruction set compiles
//   slots    its state slots shaped like the model, in order: AFM_SLOTS("m", "v") (OptimizerState::slot[i])
//   at_step  nullptr when its coefficients are the same at every step (then UpdateStep::lr only); else the
//            function (cpp/src/optimizers.cpp) giving them at step count t >= 1: the optimizer then also has the
//            slot "step", a count per row of V and w (advanced when a batch touches the row) and one of the dense
//            parameters (docs/model.md, "Optimizer state")
#define AFM_OPTIMIZERS(X)                        \
    X(adagrad, AFM_SLOTS("G"), nullptr)          \
    X(sgd, AFM_SLOTS(), nullptr)                 \
    X(adam, AFM_SLOTS("m", "v"), &adam_at_step)
#define AFM_SLOTS(...) {__VA_ARGS__}

#define AFM_OPTIMIZER_VALUE(name, slots, at_step) name,
enum class Optimizer { AFM_OPTIMIZERS(AFM_OPTIMIZER_VALUE) };
#undef AFM_OPTIMIZER_VALUE
#define AFM_OPTIMIZER_ONE(name, slots, at_step) +1
constexpr int kOptimizerCount = 0 AFM_OPTIMIZERS(AFM_OPTIMIZER_ONE);
#undef AFM_OPTIMIZER_ONE
constexpr int kMaxOptimizerSlots = 2;  // the most slots shaped like the model that a row names
constexpr const char* kStepSlot = "step";  // the slot of the step counts (optimizers with at_step)

struct TrainConfig;  // model.hpp

// One Adam step's coefficients for parameters at step count t (bias corrections 1 - beta^t folded in).
struct AdamStep {
    float beta1, beta2, eps;
    float one_minus_beta1, one_minus_beta2;  // computed in double
    float lr_corrected;   // learning_rate / (1 - beta1^t)
    float inv_bc2;        // 1 / (1 - beta2^t)
};

// The coefficients at step count t >= 1, in double: 1 - beta2^t is ~1e-3 at t = 1.
inline AdamStep adam_coefficients(double beta1, double beta2, double eps, double lr, double t) {
    const double bc1 = 1.0 - std::pow(beta1, t), bc2 = 1.0 - std::pow(beta2, t);
    return {static_cast<float>(beta1), static_cast<float>(beta2), static_cast<float>(eps),
            static_cast<float>(1.0 - beta1), static_cast<float>(1.0 - beta2), static_cast<float>(lr / bc1),
            static_cast<float>(1.0 / bc2)};
}

// What an update kernel reads besides the arrays: the coefficients of one step of some values.
struct UpdateStep {
    float lr = 0.0f;   // the learning rate (optimizers without at_step)
    AdamStep adam{};   // adam: the coefficients at the values' step count
};

// An update kernel: one optimizer step on n contiguous values theta of a parameter, with slot[i] the same values
// of the optimizer's slot i (in its row's order) and grad their gradient (theta, slots and grad never overlap).
using UpdateKernel = void (*)(float* theta, float* const* slot, const float* grad, int64_t n, const UpdateStep& s);

// An optimizer's row of the table.
struct OptimizerSpec {
    Optimizer kind;
    const char* name;
    const char* slots[kMaxOptimizerSlots];
    int n_slots;
    UpdateStep (*at_step)(const TrainConfig& cfg, double step_count);
    bool has_step_counts() const { return at_step != nullptr; }
};

const OptimizerSpec& optimizer_spec(Optimizer kind);  // cpp/src/optimizers.cpp

}  // namespace afm
