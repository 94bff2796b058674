// The block kernels of precision="bf16": the AVX-512 set whose attention GEMMs take bf16 inputs
// (isa/gemm_bf16.inc, vdpbf16ps). Never chosen by the dispatch of float32 training: only a trainer configured
// with bf16 = true runs it (bf16_kernels() in dispatch.cpp), on a CPU with AVX512_BF16.
#include <immintrin.h>

#include "afm/block_kernels.hpp"

namespace afm {
namespace isa_avx512bf16 {
#define AFM_ISA_NAME "avx512bf16"
#include "block_kernels.inc"
#undef AFM_ISA_NAME
}  // namespace isa_avx512bf16
}  // namespace afm
