// AFM's hot path on a block of whole rows, compiled once per instruction set and chosen at run time.
//
// A block is a few consecutive rows whose pairs fit in L2 (E: P x k, Z: P x t). Per block:
//   forward:  E = pair products; Z = E W^T + b (GEMM, P x t x k); s = ReLU(Z) h; per row a = softmax(s),
//             q = a^T E, y = w0 + w.x + p.(d*q)
//   backward: given g = dloss/dy per row: ds = a (c.e - c.q) with c = g p*d; delta = ds h * [Z > 0]
//             (in place over Z); dW += delta^T E (GEMM); dE = delta W (GEMM, in place over E) + a c;
//             per non-zero gradients of V rows; dh, db, dp, dw0 into the thread's dense buffers.
//   uniform pooling (attention = false, FM-like): q = ((sum v x)^2 - sum (v x)^2) / 2, O(k nnz) per row.
//   pairs-major layout (small k and t, rows of many pairs: BlockScratch::pairs_major_from): E^T (k x P)
//   and Z^T (t x P) instead, so that vectors run over pairs with every lane busy (isa/pairs_major.inc); the
//   same sums in another order.
//   long rows (more pairs than a block holds): alone in their block, streamed through pair tiles with an
//   online softmax and a recomputing backward (isa/long_rows.inc), so no buffer grows with a row's pairs.
// FLOPs per pair: forward 2tk, backward 4tk (+ O(k + t)).
//
// Why one source compiled three times (isa_avx512.cpp, isa_avx2.cpp, isa_baseline.cpp): wheels must run on
// any x86-64, so no -march flag can be global; each copy lives in its own namespace and the best one the CPU
// supports is picked once (FASTAFM_ISA=avx512|avx2|baseline forces one, e.g. to test every path).
// Threading: every pointer a call writes belongs to the calling thread.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "afm/common.hpp"
#include "afm/model.hpp"
#include "afm/optimizers.hpp"

namespace afm {

// Allocator of 64-byte aligned arrays: the kernels' work buffers start on a cache line, so that no vector
// load of a block's first row splits one (rows of k or t floats stay aligned when k, t are multiples of 16).
template <class T>
struct AlignedAllocator {
    using value_type = T;
    AlignedAllocator() = default;
    template <class U>
    AlignedAllocator(const AlignedAllocator<U>&) {}
    T* allocate(size_t n) {
        const size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
        void* p = std::aligned_alloc(64, bytes ? bytes : 64);
        if (!p) throw std::bad_alloc();
        return static_cast<T*>(p);
    }
    void deallocate(T* p, size_t) { std::free(p); }
    template <class U>
    bool operator==(const AlignedAllocator<U>&) const { return true; }
    template <class U>
    bool operator!=(const AlignedAllocator<U>&) const { return false; }
};
using AlignedFloats = std::vector<float, AlignedAllocator<float>>;

// Work memory of one thread, sized once per call for the largest block (no allocation per batch). A block
// holds up to pair_cap pairs; a row with more pairs (a long row) is alone in its block and streamed through
// tiles of tile_pairs pairs (isa/long_rows.inc), so nothing here grows with a row's pair count.
// Sizes for both layouts where k, t <= kPairsMajorMaxDim; pairs_major_from chooses the layout of each block.
constexpr int kPairsMajorMaxDim = 32;
// FwFM rows of up to this many distinct fields run their field-pair sums as GEMMs (F_row^2 floats of scratch
// each for the weights and their gradient); rows of more, as vector loops.
constexpr int kFwGemmFields = 256;

// Columns of a packed B of N columns, for any vector width up to 16 floats.
inline int64_t packed_columns(int64_t N) { return (N + 15) / 16 * 16; }

struct BlockScratch {
    int64_t pair_cap = 0;    // pairs a block may hold
    int64_t tile_pairs = 0;  // pairs per tile of a long row (<= pair_cap)
    int row_cap = 0;         // rows a block may hold
    // Rows of at least this many pairs run the pairs-major layout (0: every row, < 0: none; pairs_major_from()
    // below), rows of fewer pairs the rows layout. A row's layout depends on the row alone (so does its output):
    // callers cut blocks where it changes (BlockLayoutCut), and a block runs pairs-major when every row of it
    // with pairs qualifies. block_pairs_major: the current block's layout, for backward.
    int64_t pairs_major_from = -1;
    bool block_pairs_major = false;
    // Set by the trainer (forward then backward): rows-layout rows of k <= one vector sum the pairs' (p*d) . e in
    // the forward's pooling pass, into ds, and backward's softmax takes c . e = g (p*d) . e from there instead of
    // reading E again (pool_dots in isa/pooling.inc). Prediction leaves it off: it needs no c . e.
    bool pair_dots = false;
    AlignedFloats E;  // pair_cap rows of k floats padded to whole vectors: pair products, then dloss/de
    AlignedFloats Z;  // pair_cap rows of t floats, padded likewise: pre-activations, then dloss/dz
    AlignedFloats dv; // a padded row of k per non-zero of the longest row: one row's V gradients
    AlignedFloats gx; // the same size: one row's v x per non-zero
    AlignedFloats a;  // pair_cap: scores, then attention weights
    AlignedFloats ds; // pair_cap: dloss/dscore
    AlignedFloats q, c, mask;     // row_cap x k: pooled vectors, dloss/dq, dropout factors
    AlignedFloats y, g;           // row_cap: outputs, dloss/dy
    std::vector<int64_t> pair_off;     // row_cap + 1: first pair of each row in the block
    // Long rows only (empty when no row can be long): one tile's float32 sums and the row's float64 totals,
    // max(k, t k + 2t) each; the softmax maximum and 1 / total of the block's long row.
    AlignedFloats tile_dense;
    std::vector<double> acc64;
    float long_max = 0.0f, long_inv = 0.0f;
    // FwFM rows (isa/field_weighted.inc; empty otherwise): per distinct field of a row its sums S (v x), D
    // ((v x)^2) and T (sum of r S over the other fields), padded rows of k each, and the row's field bookkeeping:
    // fw_slot (n_fields, -1 between rows) maps a field to its place in the row, fw_field and fw_count are the
    // row's fields in order of first appearance and their non-zeros, fw_local each non-zero's place.
    AlignedFloats fw;
    std::vector<int32_t> fw_slot, fw_field, fw_count, fw_local;
    // Sizes the FwFM buffers for rows of up to nnz non-zeros (grows only); no-op for n_fields = 0.
    void reserve_fields(int64_t nnz, int k, int n_fields);
    // Field-aware AFM (isa/field_attention.inc; empty otherwise): per pair of a block (or a long row's tile) the
    // index of its field pair in R and S (upper triangle), and its pooling weight a r.
    std::vector<int32_t> fa_pair;
    AlignedFloats fa_weight;
    // precision="bf16" (isa/bf16_pairs.inc; empty otherwise): a block's pair products and δ rounded to bf16 in
    // the layouts its GEMMs read, formed where E and δ are written (no GEMM re-reads and packs them), for
    // blocks of up to bf16_pairs pairs (larger ones, a long row alone, pack as before). Words of two bf16.
    std::vector<uint32_t, AlignedAllocator<uint32_t>> bf;
    int64_t bf16_pairs = 0;
    // Words of bf for blocks of `pairs` pairs: per E and δ, rows of bf16 (padded(k) resp. padded(t) each) and
    // rows of pairs of consecutive pairs (ceil(pairs / 2) rows), each part on whole cache lines.
    static size_t bf16_words(int64_t pairs, int k, int t) {
        const size_t P = static_cast<size_t>(pairs < 1 ? 1 : pairs);
        const size_t ldk = static_cast<size_t>(packed_columns(k)), ldt = static_cast<size_t>(packed_columns(t));
        const auto lines = [](size_t n) { return (n + 15) / 16 * 16; };
        return lines(P * ldk / 2) + lines((P + 1) / 2 * ldk) + lines(P * ldt / 2) + lines((P + 1) / 2 * ldt);
    }
    void reserve_bf16(int64_t pairs, int k, int t) {  // grows only
        const size_t n = bf16_words(pairs, k, t);
        if (bf.size() < n) bf.assign(n, 0u);
        bf16_pairs = pairs < 1 ? 1 : pairs;
    }
    void reserve_pair_fields(int64_t pairs) {
        const size_t n = static_cast<size_t>(pairs < 1 ? 1 : pairs);
        if (fa_pair.size() < n) fa_pair.assign(n, 0);
        if (fa_weight.size() < n) fa_weight.assign(n, 0.0f);
    }

    // Floats (doubles for acc64) of every buffer for blocks of `pairs` pairs and `rows` rows whose longest
    // row has `nnz` non-zeros, long rows streamed in tiles of `tile` pairs; reserve allocates exactly these,
    // bytes() is what they take.
    struct Sizes {
        size_t E, Z, dv, a, q, rows, pair_off, tile_dense, acc64;
        int64_t bytes() const {
            return static_cast<int64_t>(4 * (E + Z + 2 * dv + 2 * a + 3 * q + 2 * rows + tile_dense) +
                                        8 * (pair_off + acc64));
        }
    };
    static Sizes sizes(int64_t pairs, int64_t tile, int rows, int64_t nnz, int k, int t);
    void reserve(int64_t pairs, int64_t tile, int rows, int64_t nnz, int k, int t);
    // reserve's counters without reallocating when every buffer is large enough already (a serving loop's
    // calls of similar rows allocate nothing); else reserve. The kernels read only counters and buffer sizes.
    void ensure(int64_t pairs, int64_t tile, int rows, int64_t nnz, int k, int t);
};

// Where a block walk must end the block before a row of P pairs: rows of the two layouts are not mixed (rows
// without pairs go with either). A fresh one per block.
struct BlockLayoutCut {
    int kind = -1;  // -1: no row with pairs yet, 0: rows layout, 1: pairs-major
    // Whether the row must start a new block; otherwise it joins this one.
    bool cut_before(const BlockScratch& s, int64_t P) {
        if (P == 0) return false;
        const int k = s.pairs_major_from >= 0 && P >= s.pairs_major_from ? 1 : 0;
        if (kind >= 0 && k != kind) return true;
        kind = k;
        return false;
    }
    // Whether the finished block of `pairs` pairs runs pairs-major, so on pairs_major_kernels_for's set (a
    // streamed long row, more pairs than the block holds, keeps the rows set).
    bool pairs_major_block(const BlockScratch& s, int64_t pairs) const { return kind == 1 && pairs <= s.pair_cap; }
};

// The rows of one block: non-zeros of row r are idx[r][0..nnz[r]), x[r][...].
struct BlockRows {
    int n = 0;
    const feature_t* idx[kMaxBlockRows];
    const float* x[kMaxBlockRows];
    int64_t nnz[kMaxBlockRows];
    float* dV[kMaxBlockRows];  // backward: per non-zero V gradients (nnz x k), overwritten
    float* dw[kMaxBlockRows];  // backward: per non-zero w gradients (nnz), overwritten
    bool has_mask = false;     // dropout factors are in scratch.mask
    // A block of one long row (more pairs than scratch.pair_cap; such a row is always alone in its block):
    // forward writes its attention weights here when set (pair_attention's output, P floats).
    float* long_weights = nullptr;
};

// Dense gradient buffer of one thread: [W (t*k) | b (t) | h (t) | p (k)] and w0.
struct DenseGradView {
    float* W;
    float* b;
    float* h;
    float* p;
    double* w0;
    float* R = nullptr;  // FwFM: n_fields x n_fields (both triangles written, equal)
    float* S = nullptr;  // field-aware AFM's logit terms: n_fields x n_fields (upper triangle; the trainer mirrors)
};

struct IsaKernels;

// W packed for one kernel set's GEMMs, refreshed whenever W changes (once per batch): fwd is B = W^T (k x t)
// of Z = E W^T + b, bwd is B = W (t x k) of dE = delta W, each with its columns zero-padded to whole vectors
// (room for 16-float vectors). Sized once by resize (no allocation in pack).
struct PackedW {
    AlignedFloats fwd, bwd;
    void resize(int k, int t);
    void pack(const IsaKernels& isa, const ModelView& m);
};

struct IsaKernels {
    const char* name;
    // Forward pass of a block, with m.W packed by this kernel set. Fills scratch y (and E, Z, a, q for backward).
    void (*forward)(const ModelView& m, const PackedW& Wp, bool attention, const BlockRows& rows, BlockScratch& s);
    // Backward pass after forward on the same block, with dloss/dy in scratch.g.
    void (*backward)(const ModelView& m, const PackedW& Wp, bool attention, const BlockRows& rows, BlockScratch& s,
                     DenseGradView dg);
    // C (M x N, ldc) = [bias row | C if accumulate | 0] + A B, with A(i, l) = A[i*a_rs + l*a_cs], B row-major.
    void (*gemm)(int64_t M, int64_t N, int64_t K, const float* A, int64_t a_rs, int64_t a_cs, const float* B,
                 int64_t ldb, float* C, int64_t ldc, const float* bias, bool accumulate);
    // Packs B (K x N, B(l, c) = B[l*b_rs + c*b_cs]) into out, in the layout this set's GEMMs read: at most
    // K * packed_columns(N) floats (columns zero-padded to whole vectors).
    void (*pack_b)(int64_t K, int64_t N, const float* B, int64_t b_rs, int64_t b_cs, float* out);
    // The update kernel of every optimizer of the table (afm/optimizers.hpp), in its order: update_of.
    UpdateKernel update[kOptimizerCount];
    // Where pairs_major_from() chooses the pairs-major layout on this set: for rows of at least this many pairs,
    // or -1 for none (the shapes where it measured faster, isa/pairs_major.inc).
    int64_t (*pairs_major_rows)(int k, int t);

    UpdateKernel update_of(Optimizer kind) const { return update[static_cast<int>(kind)]; }
};


inline BlockScratch::Sizes BlockScratch::sizes(int64_t pairs, int64_t tile, int rows, int64_t nnz, int k, int t) {
    const size_t P = static_cast<size_t>(pairs < 1 ? 1 : pairs), R = static_cast<size_t>(rows < 1 ? 1 : rows);
    const size_t N = static_cast<size_t>(nnz < 1 ? 1 : nnz);
    // Rows of E, Z, dv and gx padded to whole vectors of any width (the kernels use padded(k), padded(t)).
    const size_t ldk = static_cast<size_t>(packed_columns(k)), ldt = static_cast<size_t>(packed_columns(t));
    const bool long_rows = pair_count(nnz) > tile;  // a row may be long (pair_cap >= tile: a superset)
    const size_t dense = static_cast<size_t>(t) * k + 2 * static_cast<size_t>(t);
    const size_t sums = long_rows ? (dense > static_cast<size_t>(k) ? dense : static_cast<size_t>(k)) : 0;
    size_t E = P * ldk, Z = P * ldt, G = N * ldk, A = P;
    if (k <= kPairsMajorMaxDim && t <= kPairsMajorMaxDim) {
        // Pairs-major (isa/pairs_major.inc): rows of E^T and Z^T of at most round_up(P, 48) + 16 floats, 16
        // floats before E^T and the pair weights' copy and a tile of 48 after the pair buffers for whole-vector
        // loads and stores; G^T: k rows of at most round_up(nnz, 64) + 16 floats.
        const size_t ld = (P + 47) / 48 * 48 + 16, gld = (N + 63) / 64 * 64 + 16;
        const auto at_least = [](size_t& n, size_t need) { n = n > need ? n : need; };
        at_least(E, 16 + k * ld + 48);
        at_least(Z, t * ld);
        at_least(A, 16 + ld + 48);
        at_least(G, k * gld);
        at_least(G, 2 * (2 * gld + (N + 15) / 16 * 16 * 16));  // the V-gradient pass's sums (pm_scatter_row)
        at_least(G, static_cast<size_t>(t) * k * 16);    // dW's vector sums (pm_dw)
    }
    return Sizes{E, Z, G, A, R * k, R, R + 1, sums, sums};
}

inline void BlockScratch::reserve(int64_t pairs, int64_t tile, int rows, int64_t nnz, int k, int t) {
    const Sizes n = sizes(pairs, tile, rows, nnz, k, t);
    pair_cap = pairs < 1 ? 1 : pairs;
    tile_pairs = tile < 1 ? 1 : tile > pair_cap ? pair_cap : tile;
    row_cap = static_cast<int>(n.rows);
    E.assign(n.E, 0.0f);
    Z.assign(n.Z, 0.0f);
    dv.assign(n.dv, 0.0f);
    gx.assign(n.dv, 0.0f);
    a.assign(n.a, 0.0f);
    ds.assign(n.a, 0.0f);
    q.assign(n.q, 0.0f);
    c.assign(n.q, 0.0f);
    mask.assign(n.q, 1.0f);
    y.assign(n.rows, 0.0f);
    g.assign(n.rows, 0.0f);
    pair_off.assign(n.pair_off, 0);
    tile_dense.assign(n.tile_dense, 0.0f);
    acc64.assign(n.acc64, 0.0);
}

inline void BlockScratch::ensure(int64_t pairs, int64_t tile, int rows, int64_t nnz, int k, int t) {
    const Sizes n = sizes(pairs, tile, rows, nnz, k, t);
    const bool fits = E.size() >= n.E && Z.size() >= n.Z && dv.size() >= n.dv && gx.size() >= n.dv &&
                      a.size() >= n.a && ds.size() >= n.a && q.size() >= n.q && c.size() >= n.q &&
                      mask.size() >= n.q && y.size() >= n.rows && g.size() >= n.rows &&
                      pair_off.size() >= n.pair_off && tile_dense.size() >= n.tile_dense && acc64.size() >= n.acc64 &&
                      row_cap == static_cast<int>(n.rows);
    if (!fits) {
        reserve(pairs, tile, rows, nnz, k, t);
        return;
    }
    pair_cap = pairs < 1 ? 1 : pairs;
    tile_pairs = tile < 1 ? 1 : tile > pair_cap ? pair_cap : tile;
}

inline void BlockScratch::reserve_fields(int64_t nnz, int k, int n_fields) {
    if (n_fields <= 0) return;
    const size_t n = static_cast<size_t>(nnz < 1 ? 1 : nnz);
    // S, D, T and c S (rows of padded k per field of a row), and the row's field weights and their gradient
    // (F_row^2 each) for rows of up to kFwGemmFields fields (isa/field_weighted.inc)
    size_t cap = n < static_cast<size_t>(n_fields) ? n : static_cast<size_t>(n_fields);
    cap = cap < static_cast<size_t>(kFwGemmFields) ? cap : static_cast<size_t>(kFwGemmFields);
    const size_t need = 4 * n * static_cast<size_t>(packed_columns(k)) + 2 * cap * cap;
    if (fw.size() < need) fw.assign(need, 0.0f);
    if (fw_slot.size() != static_cast<size_t>(n_fields)) fw_slot.assign(static_cast<size_t>(n_fields), -1);
    if (fw_local.size() < n) {
        fw_field.assign(n, 0);
        fw_count.assign(n, 0);
        fw_local.assign(n, 0);
    }
}

inline void PackedW::resize(int k, int t) {
    fwd.assign(static_cast<size_t>(k * packed_columns(t)), 0.0f);
    bwd.assign(static_cast<size_t>(t * packed_columns(k)), 0.0f);
}

inline void PackedW::pack(const IsaKernels& isa, const ModelView& m) {
    isa.pack_b(m.k, m.t, m.W, 1, m.k, fwd.data());  // W^T: element (l, c) = W[c * k + l]
    isa.pack_b(m.t, m.k, m.W, m.k, 1, bwd.data());
}

const IsaKernels& kernels();                  // the active kernel set
// The set a model of these shapes runs on: the active one, or a narrower one where that is faster for the
// shapes (never when FASTAFM_ISA or select_isa chose the set).
const IsaKernels& kernels_for(int k, int t);
// The set that runs the pairs-major blocks (long rows, small k and t) of such a model: the active one. It
// differs from kernels_for only at k, t <= 8 on an AVX-512 CPU, where the rows layout is faster on AVX2 but
// pairs-major blocks are faster on AVX-512 (vectors over pairs use all 16 lanes): each block runs on its
// layout's set, so a row's result never depends on its neighbours (the blocks are cut by layout).
const IsaKernels& pairs_major_kernels_for(int k, int t);
// The set a row of `pairs` pairs runs on (kernel_isa): pairs_major_kernels_for where the row runs pairs-major,
// kernels_for otherwise.
const IsaKernels& kernels_for_row(int k, int t, int64_t pairs);
bool select_isa(const std::string& name);     // false if unknown or unsupported by this CPU
std::vector<std::string> supported_isas();    // best first
std::string active_isa();

// BlockScratch::pairs_major_from for a model of these shapes on `isa`: isa.pairs_major_rows(k, t), or 0 / -1
// where set_pair_layout forced a layout (-1 above kPairsMajorMaxDim, which the scratch is not sized for).
enum class PairLayout { automatic = 0, rows = 1, pairs = 2 };
int64_t pairs_major_from(const IsaKernels& isa, int k, int t);
PairLayout set_pair_layout(PairLayout layout);  // test knob; returns the previous setting

// precision="bf16" (TrainConfig::bf16): the set whose attention GEMMs take bf16 inputs with float32 sums, every
// block in the rows layout; nullptr where this build or CPU lacks AVX512_BF16. Never chosen by kernels_for.
const IsaKernels* bf16_kernels();

namespace isa_avx512 { const IsaKernels& table(); }
namespace isa_avx512bf16 { const IsaKernels& table(); }
namespace isa_avx2 { const IsaKernels& table(); }
namespace isa_baseline { const IsaKernels& table(); }

}  // namespace afm
