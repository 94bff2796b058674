// Trainer::run_epoch's progress hook, at the C++ level (the Python binding's hook can only throw
// pybind11::error_already_set, so a std exception or any other thrown value is checked here): whatever the
// hook throws stops the epoch after the batch just completed and is rethrown by run_epoch once the team has
// left the parallel region (never std::terminate); the hook runs in the calling thread's floating-point mode,
// not the kernels' FTZ/DAZ, which is restored after the call as well.
//
// Built by tests/test_core_boundary.py with the trainer, the ISA dispatch and the baseline kernels (no ISA
// clones), with OpenMP; prints "hook: N passed, M failed".
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "afm/trainer.hpp"

using namespace afm;

static int failures = 0, passes = 0;

static void check(bool ok, const std::string& what) {
    if (ok) {
        ++passes;
    } else {
        ++failures;
        std::printf("FAILED: %s\n", what.c_str());
    }
}

struct Data {
    int64_t n_features = 30, n_rows = 64;
    int k = 5, t = 3;
    std::vector<float> w0{0.1f}, w, V, W, b, h, p, G;
    std::vector<int64_t> indptr, order;
    std::vector<int32_t> indices;
    std::vector<float> values, y;

    Data() {
        std::mt19937 gen(7);
        std::normal_distribution<float> n01(0.0f, 1.0f);
        auto fill = [&](std::vector<float>& v, size_t n, float s) {
            v.resize(n);
            for (float& x : v) x = s * n01(gen);
        };
        fill(w, n_features, 0.3f);
        fill(V, n_features * k, 0.4f);
        fill(W, static_cast<size_t>(t) * k, 0.5f);
        fill(b, t, 0.5f);
        fill(h, t, 1.0f);
        fill(p, k, 1.0f);
        indptr.push_back(0);
        for (int64_t r = 0; r < n_rows; ++r) {
            const int m = 2 + static_cast<int>(r % 4);
            for (int j = 0; j < m; ++j) {
                indices.push_back(static_cast<int32_t>(gen() % n_features));
                values.push_back(0.5f + 0.1f * static_cast<float>(j));
            }
            indptr.push_back(static_cast<int64_t>(indices.size()));
            y.push_back(n01(gen));
            order.push_back(r);
        }
    }
    ModelView view() {
        ModelView m;
        m.w0 = w0.data(), m.w = w.data(), m.V = V.data(), m.W = W.data(), m.b = b.data(), m.h = h.data(),
        m.p = p.data();
        m.n_features = n_features, m.k = k, m.t = t;
        return m;
    }
    CsrView X() const {
        CsrView x;
        x.indptr = indptr.data(), x.indices = indices.data(), x.values = values.data(), x.n_rows = n_rows;
        return x;
    }
};

static TrainConfig config() {
    TrainConfig c;
    c.optimizer = Optimizer::sgd;
    c.learning_rate = 0.05f;
    c.batch_size = 8;
    c.n_threads = 2;
    return c;
}

#ifdef AFM_X86
static unsigned ftz_bits() { return _mm_getcsr() & 0x8040u; }
static bool denormal_survives() {
    volatile float tiny = 1e-38f, scale = 1e-3f;  // 1e-41 is a float32 denormal: 0 under FTZ
    return tiny * scale != 0.0f;
}
#else
static unsigned ftz_bits() { return 0; }
static bool denormal_survives() { return true; }
#endif

// Runs an epoch whose hook throws `thrower()` at its second call; the model must equal that of an epoch whose
// hook returns false at its second call (both stop after batch 2).
template <class Throw>
static void throwing_hook_stops_cleanly(const char* name, Throw thrower) {
    Data stopped, thrown;
    {
        Trainer tr(stopped.view(), OptimizerState{}, config());
        ProgressHook hook;
        hook.interval_seconds = 0.0;
        int calls = 0;
        hook.callback = [&](int64_t) { return ++calls < 2; };
        const EpochResult res =
            tr.run_epoch(stopped.X(), stopped.y.data(), nullptr, stopped.order.data(), stopped.n_rows, &hook);
        check(res.stopped && res.n_rows == 16, std::string(name) + ": returning false stops after two batches");
    }
    bool caught = false;
    int calls = 0;
    unsigned seen_ftz = 1;
    bool seen_denormal = false;
    {
        Trainer tr(thrown.view(), OptimizerState{}, config());
        ProgressHook hook;
        hook.interval_seconds = 0.0;
        hook.callback = [&](int64_t) {
            seen_ftz = ftz_bits();
            seen_denormal = denormal_survives();
            if (++calls == 2) thrower();
            return true;
        };
        try {
            tr.run_epoch(thrown.X(), thrown.y.data(), nullptr, thrown.order.data(), thrown.n_rows, &hook);
        } catch (const std::runtime_error& e) {
            caught = std::strcmp(e.what(), "from the hook") == 0;
        } catch (int v) {
            caught = v == 42;
        }
    }
    check(caught, std::string(name) + ": run_epoch rethrows what the hook threw");
    check(calls == 2, std::string(name) + ": no batch ran after the throw");
    check(seen_ftz == 0 && seen_denormal, std::string(name) + ": the hook runs without FTZ/DAZ");
    check(ftz_bits() == 0 && denormal_survives(), std::string(name) + ": FTZ/DAZ is off after the call");
    check(stopped.V == thrown.V && stopped.W == thrown.W && stopped.w == thrown.w && stopped.w0 == thrown.w0,
          std::string(name) + ": the model holds exactly the two completed batches");
}

int main() {
    check(ftz_bits() == 0 && denormal_survives(), "the process starts without FTZ/DAZ");
    throwing_hook_stops_cleanly("std::runtime_error", [] { throw std::runtime_error("from the hook"); });
    throwing_hook_stops_cleanly("int", [] { throw 42; });
    std::printf("hook: %d passed, %d failed\n", passes, failures);
    return failures ? 1 : 0;
}
