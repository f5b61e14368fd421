#pragma once
// Which x86 vector level the host kernels use: the widest the CPU has, detected once, capped by
// the environment variable GOSSIP_KERNELS_ISA=avx2|scalar or by set_host_isa_cap (the tests run
// every level and compare them, since all must give the same bytes).

namespace gossip::kernels {

enum class HostIsa { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

// kAvx512 needs AVX-512 F/BW/DQ/VL plus BMI2 and F16C; kAvx2 needs AVX2.
HostIsa host_isa();

// Lowers (or restores, up to what the CPU and the environment allow) the level used from now on,
// process-wide. For tests; not to be called while codecs run on other threads.
void set_host_isa_cap(HostIsa cap);

// True when CRC32C may use VPCLMULQDQ (host_isa() is kAvx512 and the CPU has it).
bool host_has_vpclmul();

}  // namespace gossip::kernels
