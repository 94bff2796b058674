// The fused block kernels compiled for one instruction set (flags set per file in CMakeLists.txt).
#include <immintrin.h>  // masked tails (vec.inc); outside the namespace below

#include "afm/block_kernels.hpp"

namespace afm {
namespace isa_avx512 {
#define AFM_ISA_NAME "avx512"
#include "block_kernels.inc"
#undef AFM_ISA_NAME
}  // namespace isa_avx512
}  // namespace afm
