// Arrays of SIMD vectors that also compile for targets whose vectors are sizeless, for the kernels
// that keep a block of accumulators in registers (cmm_kernels.cc, packed_gemm.cc). Included after
// <hwy/highway.h>, once per target, like Highway's own -inl.h headers.
//
// Arm SVE's vector types (and RISC-V V's) are sizeless: C++ allows no arrays and no class members
// of them, so `V acc[R][C]` does not compile for those targets. FFF_VECTOR_BLOCK(V, acc, R, C)
// declares such a block: on the other targets the very array it replaces (x86 code is unchanged),
// on sizeless ones separate locals behind a view that indexes them as acc[r][c]. The kernels index
// their blocks with constants once their loops over the block are unrolled (which they need anyway
// to keep the block in registers), so the compiler resolves every pointer to its variable.

// Per-target include guard (Highway's convention for headers with SIMD code).
#if defined(FFF_CPU_VECTOR_BLOCK_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef FFF_CPU_VECTOR_BLOCK_INL_H_
#undef FFF_CPU_VECTOR_BLOCK_INL_H_
#else
#define FFF_CPU_VECTOR_BLOCK_INL_H_
#endif

#include <hwy/highway.h>

// Highway 1.0 counts the fixed-length SVE targets as scalable; later versions do not, but their
// vectors are sizeless all the same.
#undef FFF_SIZELESS_VECTORS
#if HWY_HAVE_SCALABLE || HWY_TARGET == HWY_SVE_256 || HWY_TARGET == HWY_SVE2_128
#define FFF_SIZELESS_VECTORS 1
#else
#define FFF_SIZELESS_VECTORS 0
#endif

#undef FFF_VECTOR_BLOCK
#undef FFF_VECTOR_ARRAY
#undef FFF_VECTOR_LOCALS_
#if FFF_SIZELESS_VECTORS
// 16 locals and their addresses: the largest block a kernel holds (4 x 4 accumulators).
#define FFF_VECTOR_LOCALS_(V, name)                                                               \
  V name##_0, name##_1, name##_2, name##_3, name##_4, name##_5, name##_6, name##_7, name##_8,     \
      name##_9, name##_10, name##_11, name##_12, name##_13, name##_14, name##_15;                 \
  V* const name##_p[16] = {&name##_0,  &name##_1,  &name##_2,  &name##_3, &name##_4,  &name##_5,  \
                           &name##_6,  &name##_7,  &name##_8,  &name##_9, &name##_10, &name##_11, \
                           &name##_12, &name##_13, &name##_14, &name##_15}
#define FFF_VECTOR_BLOCK(V, name, R, C)                           \
  static_assert((R) * (C) <= 16, "a vector block of at most 16"); \
  FFF_VECTOR_LOCALS_(V, name);                                    \
  const VectorBlock<V, (C)> name(name##_p)
#define FFF_VECTOR_ARRAY(V, name, N)                        \
  static_assert((N) <= 16, "a vector array of at most 16"); \
  FFF_VECTOR_LOCALS_(V, name);                              \
  const VectorArray<V> name(name##_p)
#else
#define FFF_VECTOR_BLOCK(V, name, R, C) V name[R][C]
#define FFF_VECTOR_ARRAY(V, name, N) V name[N]
#endif

HWY_BEFORE_NAMESPACE();
namespace fff::cpu::HWY_NAMESPACE {

#if FFF_SIZELESS_VECTORS
// v[i] is the vector that p[i] points to.
template <class V>
class VectorArray {
 public:
  explicit VectorArray(V* const* p) : p_(p) {}
  HWY_INLINE V& operator[](int i) const { return *p_[i]; }

 private:
  V* const* p_;
};

// v[r][c] is the vector that p[r * C + c] points to.
template <class V, int C>
class VectorBlock {
 public:
  explicit VectorBlock(V* const* p) : p_(p) {}
  HWY_INLINE VectorArray<V> operator[](int r) const { return VectorArray<V>(p_ + r * C); }

 private:
  V* const* p_;
};
#endif

}  // namespace fff::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // FFF_CPU_VECTOR_BLOCK_INL_H_ (per target)
