// Shared basics: the error type, row-major float tensors and a portable seeded RNG.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

namespace fff {

// Every user-facing failure (bad file, bad flag, bad shape) is an fff::Error whose message
// names what was wrong; the CLI prints it and exits non-zero.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Storage for tensors: 64-byte (cache line, AVX-512 vector) aligned, so that SIMD loads of rows
// whose length is a multiple of 16 floats never straddle cache lines. Blocks of 4 MB or more
// (weight matrices) are aligned to 2 MB and backed by transparent huge pages where the kernel
// allows it: an FFF path reads a few rows scattered over hundreds of MB, and with 4 KB pages
// nearly every row would cost a TLB miss and a page walk.
void* allocate_storage(size_t bytes);
void free_storage(void* p, size_t bytes);

template <class T>
struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(allocate_storage(n * sizeof(T))); }
  void deallocate(T* p, size_t n) { free_storage(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const AlignedAllocator<U>&) const {
    return true;
  }
};
using FloatVector = std::vector<float, AlignedAllocator<float>>;

// A row-major float tensor. Most layers use 1-D or 2-D tensors; shape is kept general so that
// model files round-trip any shape.
struct Tensor {
  std::vector<int64_t> shape;
  FloatVector data;

  Tensor() = default;
  explicit Tensor(std::vector<int64_t> shape_, float fill = 0.0f);

  int64_t size() const { return static_cast<int64_t>(data.size()); }
  int64_t dim(int i) const { return shape.at(static_cast<size_t>(i)); }
  int64_t rows() const { return shape.at(0); }
  int64_t cols() const { return shape.size() < 2 ? 1 : shape[1]; }
  float* ptr() { return data.data(); }
  const float* ptr() const { return data.data(); }
  float* row(int64_t r) { return data.data() + r * cols(); }
  const float* row(int64_t r) const { return data.data() + r * cols(); }
  void zero();
  // Changes the shape, reusing the storage (contents unspecified): for per-step buffers.
  void reshape(std::vector<int64_t> new_shape);
  // Keeps the tensor if it already has this shape, else replaces it by zeros of the shape: for
  // buffers a layer's context keeps between calls of the same size.
  void ensure_shape(std::vector<int64_t> new_shape);
};

// Number of elements of a shape; throws fff::Error on negative dims or overflow.
int64_t shape_numel(const std::vector<int64_t>& shape);
std::string shape_string(const std::vector<int64_t>& shape);

// xoshiro256** seeded through splitmix64: the same stream on every platform and compiler,
// unlike std::uniform_real_distribution.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0);
  uint64_t next_u64();
  float uniform();                    // [0, 1)
  float uniform(float lo, float hi);  // [lo, hi)
  uint64_t below(uint64_t n);         // [0, n), n > 0
  float normal();                     // standard normal (Box-Muller)

 private:
  uint64_t s_[4];
};

// Fills t with values uniform in [-bound, bound).
void fill_uniform(Tensor& t, float bound, Rng& rng);

// Seconds on a steady clock, for timing phases and progress.
double now_seconds();

}  // namespace fff
