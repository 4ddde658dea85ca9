// Tests for the linear-recurrence scans: every algorithm against the double-precision
// sequential reference on random lengths (1, 2, odd, powers of two and not) and widths, with
// gates at exactly 0 and 1, with and without an initial state, on 1 and 2 threads; backward
// against the sequential backward and against finite differences.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "fff/core/context.h"
#include "fff/cpu/scan.h"
#include "fff/testing/cpu.h"
#include "test_util.h"

namespace {

using fff::Rng;
using fff::ScanAlgo;
using namespace fff_test;

// Gates in [0, 1] with some exactly 0 and exactly 1 (a reset and a pass-through).
std::vector<float> random_gates(int64_t n, Rng& rng) {
  std::vector<float> f(static_cast<size_t>(n));
  for (float& v : f) {
    const uint64_t k = rng.below(10);
    v = k == 0 ? 0.0f : k == 1 ? 1.0f : rng.uniform(0.0f, 1.0f);
  }
  return f;
}

std::string desc(ScanAlgo a, int64_t T, int64_t C, bool h0, int threads) {
  return std::string(fff::scan_algo_name(a)) + " T=" + std::to_string(T) +
         " C=" + std::to_string(C) + (h0 ? " h0" : "") + " threads=" + std::to_string(threads);
}

const int64_t kLengths[] = {1, 2, 3, 7, 8, 16, 17, 100, 128, 1000, 1025};
const int64_t kWidths[] = {1, 3, 16, 33};

TEST(Scan, ForwardMatchesReference) {
  Rng rng(1);
  for (int threads : {1, 2}) {
    fff::Context ectx(threads);
    for (int64_t T : kLengths)
      for (int64_t C : kWidths)
        for (bool with_h0 : {false, true}) {
          const auto f = random_gates(T * C, rng);
          const auto x = random_vec(T * C, rng);
          const auto h0 = random_vec(C, rng);
          std::vector<float> ref(T * C);
          fff::scan_forward_reference(f.data(), x.data(), T, C, with_h0 ? h0.data() : nullptr,
                                      ref.data());
          for (ScanAlgo a : fff::kScanAlgos) {
            std::vector<float> h(T * C, NAN);
            fff::scan_forward(ectx, a, f.data(), x.data(), T, C, with_h0 ? h0.data() : nullptr,
                              h.data());
            ASSERT_LE(max_rel_err(h, ref), 1e-5) << desc(a, T, C, with_h0, threads);
          }
        }
  }
}

TEST(Scan, GatesAtZeroAndOne) {
  fff::Context ectx(2);
  // f = 0 resets the state to x; f = 1 sums. Exact in every algorithm.
  const int64_t T = 37, C = 2;
  std::vector<float> f(T * C), x(T * C, 1.0f), h(T * C);
  for (int64_t t = 0; t < T; ++t) {
    f[t * C] = 1.0f;                          // channel 0: running count
    f[t * C + 1] = t % 5 == 0 ? 0.0f : 1.0f;  // channel 1: count since the last reset
  }
  const float h0[2] = {10.0f, 10.0f};
  for (ScanAlgo a : fff::kScanAlgos) {
    fff::scan_forward(ectx, a, f.data(), x.data(), T, C, h0, h.data());
    for (int64_t t = 0; t < T; ++t) {
      EXPECT_EQ(h[t * C], 11.0f + t) << fff::scan_algo_name(a) << " t=" << t;
      EXPECT_EQ(h[t * C + 1], 1.0f + t % 5) << fff::scan_algo_name(a) << " t=" << t;
    }
  }
}

// Loss L = sum R * h for fixed random R; gradients from the sequential backward.
TEST(Scan, BackwardMatchesSequentialAndFiniteDifferences) {
  Rng rng(2);
  for (int threads : {1, 2}) {
    fff::Context ectx(threads);
    for (int64_t T : {1, 2, 5, 16, 33, 300})
      for (int64_t C : {1, 4, 17}) {
        const auto f = random_gates(T * C, rng);
        const auto x = random_vec(T * C, rng);
        const auto h0 = random_vec(C, rng);
        const auto R = random_vec(T * C, rng);
        std::vector<float> h(T * C);
        fff::scan_forward(ectx, ScanAlgo::sequential, f.data(), x.data(), T, C, h0.data(),
                          h.data());
        std::vector<float> dx_ref(T * C), df_ref(T * C), dh0_ref(C);
        fff::scan_backward(ectx, ScanAlgo::sequential, f.data(), h.data(), R.data(), T, C,
                           h0.data(), dx_ref.data(), df_ref.data(), dh0_ref.data());
        for (ScanAlgo a : fff::kScanAlgos) {
          std::vector<float> dx(T * C, NAN), df(T * C, NAN), dh0(C, NAN);
          fff::scan_backward(ectx, a, f.data(), h.data(), R.data(), T, C, h0.data(), dx.data(),
                             df.data(), dh0.data());
          const std::string what = desc(a, T, C, true, threads);
          ASSERT_LE(max_rel_err(dx, dx_ref), 1e-5) << what;
          ASSERT_LE(max_rel_err(df, df_ref), 1e-5) << what;
          ASSERT_LE(max_rel_err(dh0, dh0_ref), 1e-5) << what;
        }
        if (threads == 2) continue;
        // Finite differences (double loss, 4-point stencil) on a few entries of x, f and h0.
        auto loss = [&](const std::vector<float>& ff, const std::vector<float>& xx,
                        const std::vector<float>& hh0) {
          std::vector<float> hh(T * C);
          fff::scan_forward_reference(ff.data(), xx.data(), T, C, hh0.data(), hh.data());
          double s = 0.0;
          for (int64_t i = 0; i < T * C; ++i) s += static_cast<double>(R[i]) * hh[i];
          return s;
        };
        const double eps = 1e-2;
        auto fd = [&](auto perturb) { return fd4(perturb, 0.0, eps); };
        for (int probe = 0; probe < 3; ++probe) {
          const int64_t i = static_cast<int64_t>(rng.below(static_cast<uint64_t>(T * C)));
          const int64_t c = static_cast<int64_t>(rng.below(static_cast<uint64_t>(C)));
          const double gx = fd([&](double e) {
            auto xx = x;
            xx[i] += static_cast<float>(e);
            return loss(f, xx, h0);
          });
          const double gf = fd([&](double e) {
            auto ff = f;
            ff[i] += static_cast<float>(e);
            return loss(ff, x, h0);
          });
          const double gh = fd([&](double e) {
            auto hh = h0;
            hh[c] += static_cast<float>(e);
            return loss(f, x, hh);
          });
          EXPECT_NEAR(dx_ref[i], gx, 2e-3 * (1.0 + std::fabs(gx))) << "dx T=" << T << " C=" << C;
          EXPECT_NEAR(df_ref[i], gf, 2e-3 * (1.0 + std::fabs(gf))) << "df T=" << T << " C=" << C;
          EXPECT_NEAR(dh0_ref[c], gh, 2e-3 * (1.0 + std::fabs(gh))) << "dh0 T=" << T;
        }
      }
  }
}

TEST(Scan, LongSingleChannelOnTwoThreads) {
  // The case the parallel scans are for: one channel, a long sequence split across threads.
  fff::Context ectx(2);
  Rng rng(3);
  const int64_t T = 100000;
  std::vector<float> f(T), x = random_vec(T, rng), ref(T), h(T);
  for (float& v : f) v = rng.uniform(0.9f, 1.0f);
  fff::scan_forward_reference(f.data(), x.data(), T, 1, nullptr, ref.data());
  for (ScanAlgo a : fff::kScanAlgos) {
    fff::scan_forward(ectx, a, f.data(), x.data(), T, 1, nullptr, h.data());
    EXPECT_LE(max_rel_err(h, ref), 1e-5) << fff::scan_algo_name(a);
  }
}

// The chunked scan fixes up each later chunk only until the product of its gates underflows to
// zero in every channel: check it where that happens early, where one channel never lets it
// happen (gates of exactly 1 in the first or the last channel), and that a NaN entering a chunk
// still spreads as it does in the sequential scan.
TEST(Scan, ChunkedFixUpStopsOnlyWhenTheCarryVanishes) {
  fff::Context ectx(2);
  Rng rng(4);
  const int64_t T = 4000;
  for (int64_t C : {1, 41}) {
    for (int variant = 0; variant < 4; ++variant) {
      std::vector<float> f(T * C), x = random_vec(T * C, rng);
      for (float& v : f) v = rng.uniform(0.5f, 1.0f);
      if (variant == 1 || variant == 3)  // the first or the last channel sums
        for (int64_t t = 0; t < T; ++t) f[t * C + (variant == 1 ? 0 : C - 1)] = 1.0f;
      if (variant == 2) x[(T / 2 - 10) * C] = NAN;  // 10 steps before a chunk boundary
      std::vector<float> ref(T * C), h(T * C, 0.0f);
      fff::scan_forward(ectx, ScanAlgo::sequential, f.data(), x.data(), T, C, nullptr, ref.data());
      fff::scan_forward(ectx, ScanAlgo::chunked, f.data(), x.data(), T, C, nullptr, h.data());
      const std::string what = "C=" + std::to_string(C) + " variant " + std::to_string(variant);
      if (variant == 2) {
        for (int64_t i = 0; i < T * C; ++i)
          ASSERT_EQ(std::isnan(h[i]), std::isnan(ref[i])) << what << " i=" << i;
        continue;
      }
      std::vector<float> exact(T * C);
      fff::scan_forward_reference(f.data(), x.data(), T, C, nullptr, exact.data());
      EXPECT_LE(max_rel_err(h, exact), 1e-5) << what;
      // The backward runs the same chunks on the reversed sequence.
      const auto R = random_vec(T * C, rng);
      std::vector<float> dx_ref(T * C), df_ref(T * C), dx(T * C), df(T * C);
      fff::scan_backward(ectx, ScanAlgo::sequential, f.data(), ref.data(), R.data(), T, C, nullptr,
                         dx_ref.data(), df_ref.data(), nullptr);
      fff::scan_backward(ectx, ScanAlgo::chunked, f.data(), ref.data(), R.data(), T, C, nullptr,
                         dx.data(), df.data(), nullptr);
      EXPECT_LE(max_rel_err(dx, dx_ref), 1e-5) << what;
      EXPECT_LE(max_rel_err(df, df_ref), 1e-5) << what;
    }
  }
}

TEST(Scan, ParseNames) {
  for (ScanAlgo a : fff::kScanAlgos) EXPECT_EQ(fff::parse_scan_algo(fff::scan_algo_name(a)), a);
  EXPECT_THROW(fff::parse_scan_algo("fast"), fff::Error);
}

}  // namespace
