// The optimizer table (afm/optimizers.hpp) and the step coefficients of the optimizers that count steps.
// Compiled once, without the instruction sets' flags: nothing here runs per element (the update kernels are
// in isa/optimizers.inc).
#include "afm/optimizers.hpp"

#include <initializer_list>

#include "afm/model.hpp"

namespace afm {

namespace {

UpdateStep adam_at_step(const TrainConfig& cfg, double step_count) {
    UpdateStep s;
    s.lr = cfg.learning_rate;
    s.adam = adam_coefficients(cfg.adam_beta1, cfg.adam_beta2, cfg.adam_eps, cfg.learning_rate, step_count);
    return s;
}

constexpr OptimizerSpec spec(Optimizer kind, const char* name, std::initializer_list<const char*> slots,
                             UpdateStep (*at_step)(const TrainConfig&, double)) {
    OptimizerSpec s{kind, name, {}, 0, at_step};
    for (const char* slot : slots) {
        if (s.n_slots == kMaxOptimizerSlots) throw "a row of AFM_OPTIMIZERS has more than kMaxOptimizerSlots slots";
        s.slots[s.n_slots++] = slot;
    }
    return s;
}

#define AFM_OPTIMIZER_SPEC(name, slots, at_step) spec(Optimizer::name, #name, slots, at_step),
constexpr OptimizerSpec kSpecs[] = {AFM_OPTIMIZERS(AFM_OPTIMIZER_SPEC)};
#undef AFM_OPTIMIZER_SPEC
static_assert(sizeof(kSpecs) / sizeof(kSpecs[0]) == kOptimizerCount, "one spec per optimizer");

}  // namespace

const OptimizerSpec& optimizer_spec(Optimizer kind) { return kSpecs[static_cast<int>(kind)]; }

}  // namespace afm
