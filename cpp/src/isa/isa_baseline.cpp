// The fused block kernels compiled for one instruction set (flags set per file in CMakeLists.txt).
#include "afm/block_kernels.hpp"

namespace afm {
namespace isa_baseline {
#define AFM_ISA_NAME "baseline"
#include "block_kernels.inc"
#undef AFM_ISA_NAME
}  // namespace isa_baseline
}  // namespace afm
