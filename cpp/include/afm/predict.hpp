// Prediction and attention read-out over CSR rows (no dropout, the model is read only).
//
// Threading: rows are split dynamically over the team; each output element is written by one thread,
// and each row's value does not depend on the split, so results are the same for any thread count.
#pragma once
#include <memory>
#include <vector>

#include "afm/common.hpp"
#include "afm/model.hpp"

namespace afm {

struct PredictWork;  // work memory kept between the calls of a Predictor (predict.cpp)

// The serving loop's prediction: a model read only, validated once by the caller and kept; its work memory (the
// packed attention weights, each thread's block scratch) kept between calls and grown only when a call's rows
// need more. run() equals predict() bit for bit (the same blocks, pair capacity and tiles for the same rows);
// a call whose rows fit one chunk runs on the calling thread without an OpenMP region. With n_threads > 1 it
// judges, call by call, whether its team beats the calling thread alone, and runs a team's rows alone while its
// cores are busy elsewhere (TeamJudge, team_judge.hpp; the outputs are the same either way). Not reentrant: one
// call at a time (the binding serialises them).
class Predictor {
public:
    Predictor(const ModelView& m, bool attention);
    ~Predictor();
    Predictor(const Predictor&) = delete;
    Predictor& operator=(const Predictor&) = delete;
    void run(const CsrView& X, float* out, int n_threads);
    const ModelView& model() const { return m_; }
    bool attention() const { return attention_; }
    // Calls that had rows for more than one thread: run on the team, and on the calling thread alone.
    long long team_calls() const;
    long long solo_calls() const;

private:
    ModelView m_;
    bool attention_;
    std::unique_ptr<PredictWork> work_;
};

// out[r] = y(x_r), the raw model output (regression value or logit).
void predict(const ModelView& m, const CsrView& X, bool attention, float* out, int n_threads);

// predict's outputs as training computes them in bf16 mode (TrainConfig::bf16): for tests of that mode; throws
// std::invalid_argument (kBf16Missing) where bf16_kernels() is null.
void predict_bf16(const ModelView& m, const CsrView& X, bool attention, float* out, int n_threads);

// Attention weights a_rs of every row's pairs, written at out[pair_indptr[r] ..), storage order of (r<s).
// pair_indptr (n_rows+1) must hold the prefix sums of m_r (m_r - 1) / 2.
void pair_attention(const ModelView& m, const CsrView& X, bool attention, const int64_t* pair_indptr, float* out,
                    int n_threads);

}  // namespace afm
