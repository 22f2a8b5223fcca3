#include "engine/kernels/type_kernels.h"

#include <cpuid.h>

#include <array>
#include <cstdlib>

#include "engine/kernels/type_kernels_internal.h"

namespace cellhouse::engine {

namespace {

// F16C is a feature bit of its own (CPUID leaf 1, ECX bit 29) that __builtin_cpu_supports does
// not name. Asked once: CPUID exits to the hypervisor in a VM.
bool HasF16c() {
  static const bool kHas = [] {
    unsigned eax = 0;
    unsigned ebx = 0;
    unsigned ecx = 0;
    unsigned edx = 0;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
  }();
  return kHas;
}

constexpr int kIsas = 3;
constexpr int kOrders = 3;
constexpr size_t kTypeIds = 40;  // above every TensorType id

internal::ProductFns Products(TensorType type, KernelIsa isa, DotOrder order) {
  internal::ProductFns fns;
  if (order == DotOrder::kVecDot) {
    switch (isa) {
      case KernelIsa::kPortable:
        fns = internal::FloatProductsPortable(type);
        break;
      case KernelIsa::kAvx2:
        fns = internal::FloatProductsAvx2(type);
        break;
      case KernelIsa::kAvx512:
        fns = internal::FloatProductsAvx512(type);
        break;
    }
  }
  if (fns.dot == nullptr) {
    switch (isa) {
      case KernelIsa::kPortable:
        fns = internal::KProductsPortable(type, order);
        break;
      case KernelIsa::kAvx2:
        fns = internal::KProductsAvx2(type, order);
        break;
      case KernelIsa::kAvx512:
        fns = internal::KProductsAvx512(type, order);
        break;
    }
  }
  if (fns.dot == nullptr) {
    switch (isa) {
      case KernelIsa::kPortable:
        fns = internal::Q32ProductsPortable(type, order);
        break;
      case KernelIsa::kAvx2:
        fns = internal::Q32ProductsAvx2(type, order);
        break;
      case KernelIsa::kAvx512:
        fns = internal::Q32ProductsAvx512(type, order);
        break;
    }
  }
  return fns;
}

// Decode (one token) streams every weight once and is bound by memory, not by the vector width.
// On this project's Zen 4 host (AMD EPYC, 2.6 GHz) the AVX2 kernels stream F16, BF16 and Q8_0
// rows faster than the AVX-512 ones, so AVX-512 CPUs decode those types with them; products of
// several tokens keep the AVX-512 tiles (F16's are 1.4x faster than 256-bit ones). Measured:
//  - F16 and BF16 rows from memory (kernel_bench): 23.2 -> 25.5 and 17.6 -> 25.3 GB/s; the 110m
//    model in F16 (gguf_bench): 95.8/94.3 -> 114.9/112.2 tok/s.
//  - Q8_0, the 110m model (gguf_bench, interleaved A/B): 8-row VNNI tiles 139-153 tok/s, 4-row
//    ones 189-198, 2 or 6 rows 175-177, the AVX2 kernel (sign-trick maddubs, 4 rows) 200-206.
//    Q4_0 and Q4_K_M measured no faster that way: they are bound by compute and keep theirs.
// Every kernel gives the portable definition's bits, so this is a choice of speed only.
bool DecodesNarrower(TensorType type, KernelIsa isa, DotOrder order) {
  return isa == KernelIsa::kAvx512 && order == DotOrder::kVecDot &&
         (type == TensorType::kF16 || type == TensorType::kBF16 || type == TensorType::kQ8_0);
}

using Table = std::array<std::array<std::array<TypeKernels, kOrders>, kIsas>, kTypeIds>;

// Every (type, isa, order) the engine computes; an instruction set whose file does not cover a
// type yet gets the next lower one's products.
Table BuildTable() {
  Table table{};
  for (const TypeInfo& info : kTypeInfos) {
    if (!info.weight) {
      continue;
    }
    for (int o = 0; o < kOrders; ++o) {
      const auto order = static_cast<DotOrder>(o);
      internal::ProductFns lower;
      for (int i = 0; i < kIsas; ++i) {
        const auto isa = static_cast<KernelIsa>(i);
        internal::ProductFns fns = Products(info.type, isa, order);
        if (fns.dot == nullptr) {
          fns = lower;
        }
        lower = fns;
        if (fns.dot == nullptr) {
          continue;
        }
        const internal::ProductFns narrower = DecodesNarrower(info.type, isa, order)
                                                  ? Products(info.type, KernelIsa::kAvx2, order)
                                                  : internal::ProductFns{};
        table[static_cast<size_t>(info.type)][i][o] = {
            .type = info.type,
            .partner = info.partner,
            .isa = isa,
            .order = order,
            .dequantize = internal::Dequantizer(info.type),
            .quantize_activations = internal::ActivationQuantizerFor(info.partner, isa),
            .dot = fns.dot,
            .matmul = fns.matmul,
            .decode = narrower.matmul != nullptr ? narrower.matmul : fns.matmul,
        };
      }
    }
  }
  return table;
}

}  // namespace

std::string_view KernelIsaName(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::kPortable:
      return "portable";
    case KernelIsa::kAvx2:
      return "avx2";
    case KernelIsa::kAvx512:
      return "avx512";
  }
  return "?";
}

bool KernelIsaSupported(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::kPortable:
      return true;
    case KernelIsa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && HasF16c();
    case KernelIsa::kAvx512:
      return KernelIsaSupported(KernelIsa::kAvx2) && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512vnni");
  }
  return false;
}

KernelIsa BestKernelIsa() {
  static const KernelIsa kBest = [] {
    if (KernelIsaSupported(KernelIsa::kAvx512)) {
      return KernelIsa::kAvx512;
    }
    return KernelIsaSupported(KernelIsa::kAvx2) ? KernelIsa::kAvx2 : KernelIsa::kPortable;
  }();
  return kBest;
}

DotOrder ReferenceDotOrder(TensorType type, int64_t rows, WeightUse use) {
  // ggml_aarch64_get_optimal_repack_type: Q4_0 on an AVX2 CPU with rows % 8 == 0, for tensors
  // placed in the repacking buffer, which llama.cpp does for every matrix-multiplied weight but
  // the token embedding (looked up with get_rows, which the repacked layout does not serve).
  if (type == TensorType::kQ4_0 && rows % 8 == 0 && use == WeightUse::kMatMul) {
    return DotOrder::kInterleaved8;
  }
  return DotOrder::kVecDot;
}

DotOrder PromptOrder(TensorType type, DotOrder order) {
  const bool own = type == TensorType::kQ8_0 || type == TensorType::kQ4_K ||
                   type == TensorType::kQ5_K || type == TensorType::kQ6_K;
  return own && order == DotOrder::kVecDot ? DotOrder::kBlockSums : order;
}

const TypeKernels* FindTypeKernels(TensorType type, KernelIsa isa, DotOrder order) {
  static const Table kTable = BuildTable();
  const auto id = static_cast<size_t>(type);
  if (id >= kTypeIds) {
    return nullptr;
  }
  while (!KernelIsaSupported(isa)) {
    isa = static_cast<KernelIsa>(static_cast<int>(isa) - 1);
  }
  const TypeKernels& k = kTable[id][static_cast<size_t>(isa)][static_cast<size_t>(order)];
  return k.dot != nullptr ? &k : nullptr;
}

const TypeKernels& GetTypeKernels(TensorType type, KernelIsa isa, DotOrder order) {
  const TypeKernels* k = FindTypeKernels(type, isa, order);
  if (k == nullptr) {
    std::abort();  // a caller's bug: only weight types (and Q4_0's and Q8_0's second orders)
  }
  return *k;
}

std::optional<uint64_t> ActivationRowBytes(TensorType type, int64_t cols) {
  const TypeInfo* info = FindTypeInfo(static_cast<uint32_t>(type));
  if (info == nullptr || cols < 0 || !RowBytes(*info, static_cast<uint64_t>(cols))) {
    return std::nullopt;
  }
  // F16/BF16 activations are kept as the floats their rounded values exactly are.
  const TensorType layout = info->partner == TensorType::kF16 || info->partner == TensorType::kBF16
                                ? TensorType::kF32
                                : info->partner;
  const TypeInfo* partner = FindTypeInfo(static_cast<uint32_t>(layout));
  if (partner == nullptr) {
    return std::nullopt;
  }
  return RowBytes(*partner, static_cast<uint64_t>(cols));
}

}  // namespace cellhouse::engine
