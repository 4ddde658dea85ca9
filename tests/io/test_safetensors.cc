// Tests for safetensors save/load: round trips, file layout, atomic writes and corrupt files.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include "fff/io/atomic_file.h"
#include "fff/io/safetensors.h"

namespace fs = std::filesystem;

namespace {

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(n >> (8 * i));
  return s;
}

uint64_t read_le64(const std::string& bytes) {
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i)
    n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  return n;
}

// A file with the given header text and `data_bytes` bytes of data (zeros).
std::string make_file(const std::string& header, size_t data_bytes) {
  return le64(header.size()) + header + std::string(data_bytes, '\0');
}

fff::Tensor make_tensor(std::vector<int64_t> shape, float start) {
  fff::Tensor t(std::move(shape));
  for (size_t i = 0; i < t.data.size(); ++i) t.data[i] = start + 0.5f * static_cast<float>(i);
  return t;
}

bool same_bits(const fff::Tensor& a, const fff::Tensor& b) {
  return a.shape == b.shape && a.data.size() == b.data.size() &&
         (a.data.empty() ||
          std::memcmp(a.data.data(), b.data.data(), a.data.size() * sizeof(float)) == 0);
}

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "fff_safetensors_XXXXXX").string();
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string file(const std::string& name) const { return (dir_ / name).string(); }

  // Writes `bytes` to a file and expects load to throw fff::Error starting with the path and
  // containing `expect`.
  void expect_bad(const std::string& bytes, const std::string& expect) {
    const std::string path = file("bad.safetensors");
    write_bytes(path, bytes);
    expect_load_error(path, expect);
  }

  static void expect_load_error(const std::string& path, const std::string& expect) {
    try {
      fff::load_safetensors(path);
      ADD_FAILURE() << "load of " << path << " did not throw; expected: " << expect;
    } catch (const fff::Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
      EXPECT_NE(msg.find(expect), std::string::npos)
          << "message: " << msg << "\nexpected: " << expect;
    }
  }

  fs::path dir_;
};

TEST_F(SafetensorsTest, RoundTrip) {
  const fff::Tensor a = make_tensor({2, 3}, 1.0f);
  const fff::Tensor b = make_tensor({5}, -3.0f);
  const fff::Tensor c = make_tensor({2, 2, 2}, 100.0f);
  fff::Tensor scalar(std::vector<int64_t>{});
  scalar.data[0] = 42.25f;
  const fff::Tensor empty({0});
  const fff::Tensor empty2({3, 0});
  fff::Tensor special({4});
  special.data = {std::numeric_limits<float>::infinity(), -0.0f, std::nanf(""),
                  std::numeric_limits<float>::denorm_min()};
  const std::map<std::string, std::string> meta = {
      {"format", "fff"}, {"note", "h\u00e9llo \"quoted\"\n"}, {"empty", ""}};

  const std::string path = file("model.safetensors");
  fff::save_safetensors(path,
                        {{"layer.w", &a},
                         {"bias", &b},
                         {"cube", &c},
                         {"scalar", &scalar},
                         {"empty", &empty},
                         {"empty2", &empty2},
                         {"special", &special}},
                        meta);
  const fff::SafetensorsFile f = fff::load_safetensors(path);
  EXPECT_EQ(f.metadata, meta);
  ASSERT_EQ(f.tensors.size(), 7u);
  EXPECT_TRUE(same_bits(f.tensors.at("layer.w"), a));
  EXPECT_TRUE(same_bits(f.tensors.at("bias"), b));
  EXPECT_TRUE(same_bits(f.tensors.at("cube"), c));
  EXPECT_TRUE(same_bits(f.tensors.at("scalar"), scalar));
  EXPECT_EQ(f.tensors.at("scalar").shape, std::vector<int64_t>{});
  EXPECT_EQ(f.tensors.at("scalar").size(), 1);
  EXPECT_TRUE(same_bits(f.tensors.at("empty"), empty));
  EXPECT_EQ(f.tensors.at("empty").size(), 0);
  EXPECT_TRUE(same_bits(f.tensors.at("empty2"), empty2));
  EXPECT_TRUE(same_bits(f.tensors.at("special"), special));
}

TEST_F(SafetensorsTest, NoTensorsNoMetadata) {
  const std::string path = file("empty.safetensors");
  fff::save_safetensors(path, {}, {});
  const fff::SafetensorsFile f = fff::load_safetensors(path);
  EXPECT_TRUE(f.tensors.empty());
  EXPECT_TRUE(f.metadata.empty());
}

TEST_F(SafetensorsTest, FileLayout) {
  const fff::Tensor a = make_tensor({3}, 1.0f);
  const fff::Tensor b = make_tensor({2, 2}, 2.0f);
  const std::string path = file("layout.safetensors");
  fff::save_safetensors(path, {{"zeta", &a}, {"alpha", &b}}, {{"k", "v"}});

  const std::string bytes = read_bytes(path);
  ASSERT_GE(bytes.size(), 8u);
  const uint64_t n = read_le64(bytes);
  EXPECT_EQ((8 + n) % 8, 0u);
  ASSERT_EQ(bytes.size(), 8 + n + (3 + 4) * sizeof(float));

  const std::string header = bytes.substr(8, n);
  const auto j = nlohmann::ordered_json::parse(header);
  ASSERT_TRUE(j.is_object());
  std::vector<std::string> keys;
  for (const auto& [k, _] : j.items()) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"__metadata__", "zeta", "alpha"}));
  EXPECT_EQ(j["__metadata__"], nlohmann::ordered_json({{"k", "v"}}));
  EXPECT_EQ(j["zeta"]["dtype"], "F32");
  EXPECT_EQ(j["zeta"]["shape"], nlohmann::ordered_json({3}));
  EXPECT_EQ(j["zeta"]["data_offsets"], nlohmann::ordered_json({0, 12}));
  EXPECT_EQ(j["alpha"]["shape"], nlohmann::ordered_json({2, 2}));
  EXPECT_EQ(j["alpha"]["data_offsets"], nlohmann::ordered_json({12, 28}));

  float first;
  std::memcpy(&first, bytes.data() + 8 + n, sizeof(float));
  EXPECT_EQ(first, a.data[0]);
}

TEST_F(SafetensorsTest, NoLeftoverTempFiles) {
  const fff::Tensor a = make_tensor({10}, 0.0f);
  const std::string path = file("clean.safetensors");
  fff::save_safetensors(path, {{"a", &a}}, {});
  fff::save_safetensors(path, {{"a", &a}}, {});
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir_)) names.push_back(entry.path().filename());
  EXPECT_EQ(names, std::vector<std::string>{"clean.safetensors"});
}

TEST_F(SafetensorsTest, OverwriteExistingFile) {
  const std::string path = file("over.safetensors");
  const fff::Tensor big = make_tensor({100}, 1.0f);
  fff::save_safetensors(path, {{"big", &big}}, {{"v", "1"}});
  const fff::Tensor small = make_tensor({2}, 7.0f);
  fff::save_safetensors(path, {{"small", &small}}, {{"v", "2"}});
  const fff::SafetensorsFile f = fff::load_safetensors(path);
  ASSERT_EQ(f.tensors.size(), 1u);
  EXPECT_TRUE(same_bits(f.tensors.at("small"), small));
  EXPECT_EQ(f.metadata.at("v"), "2");
}

TEST_F(SafetensorsTest, SaveToMissingDirectoryThrows) {
  const std::string path = file("no/such/dir/x.safetensors");
  const fff::Tensor a = make_tensor({2}, 0.0f);
  try {
    fff::save_safetensors(path, {{"a", &a}}, {});
    FAIL() << "expected fff::Error";
  } catch (const fff::Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(path + ": ", 0), 0u) << e.what();
  }
}

TEST_F(SafetensorsTest, SaveRejectsBadInputAndKeepsOldFile) {
  const std::string path = file("keep.safetensors");
  const fff::Tensor a = make_tensor({2}, 0.0f);
  fff::save_safetensors(path, {{"a", &a}}, {});
  const std::string before = read_bytes(path);

  auto expect_save_error = [&](const std::vector<std::pair<std::string, const fff::Tensor*>>& ts,
                               const std::string& expect) {
    try {
      fff::save_safetensors(path, ts, {});
      ADD_FAILURE() << "save did not throw; expected: " << expect;
    } catch (const fff::Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
      EXPECT_NE(msg.find(expect), std::string::npos) << msg;
    }
  };
  expect_save_error({{"a", &a}, {"a", &a}}, "duplicate");
  expect_save_error({{"__metadata__", &a}}, "__metadata__");
  expect_save_error({{"n", nullptr}}, "null");
  fff::Tensor mismatched({3});
  mismatched.data.resize(2);
  expect_save_error({{"m", &mismatched}}, "'m'");

  EXPECT_EQ(read_bytes(path), before);
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir_)) names.push_back(entry.path().filename());
  EXPECT_EQ(names, std::vector<std::string>{"keep.safetensors"});
}

// The names in the test's directory, sorted.
std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

TEST_F(SafetensorsTest, AtomicWriteCheckSeesTheCompleteFileBeforeTheRename) {
  const std::string path = file("checked.safetensors");
  const fff::Tensor old_t = make_tensor({3}, 1.0f), new_t = make_tensor({1000, 17}, 2.0f);
  fff::save_safetensors(path, {{"t", &old_t}}, {{"v", "old"}});
  int checks = 0;
  fff::save_safetensors(path, {{"t", &new_t}}, {{"v", "new"}}, [&](const std::string& name) {
    ++checks;
    EXPECT_EQ(fff::load_safetensors(path).metadata.at("v"), "old");  // not replaced yet
    const fff::SafetensorsFile f = fff::load_safetensors(name);
    EXPECT_TRUE(same_bits(f.tensors.at("t"), new_t));
    EXPECT_EQ(names_in(dir_), std::vector<std::string>{"checked.safetensors"})
        << "the file being checked has no name yet (O_TMPFILE)";
  });
  EXPECT_EQ(checks, 1);
  EXPECT_TRUE(same_bits(fff::load_safetensors(path).tensors.at("t"), new_t));
  EXPECT_EQ(names_in(dir_), std::vector<std::string>{"checked.safetensors"});
}

TEST_F(SafetensorsTest, AtomicWriteRejectedByCheckKeepsOldFileAndLeavesNothing) {
  const std::string path = file("rejected.safetensors");
  const fff::Tensor a = make_tensor({4}, 0.0f);
  fff::save_safetensors(path, {{"a", &a}}, {{"v", "old"}});
  const std::string before = read_bytes(path);
  try {
    fff::save_safetensors(path, {{"a", &a}}, {{"v", "new"}}, [](const std::string& name) {
      throw fff::Error(name + ": not acceptable");
    });
    ADD_FAILURE() << "a rejected file was saved";
  } catch (const fff::Error& e) {
    // The message does not name a /proc path the user never saw.
    EXPECT_EQ(std::string(e.what()).find("/proc/"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("not acceptable"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_EQ(names_in(dir_), std::vector<std::string>{"rejected.safetensors"});
}

TEST_F(SafetensorsTest, AtomicWriteWriterThrowingKeepsOldFileAndLeavesNothing) {
  const std::string path = file("partial.bin");
  write_bytes(path, "old contents");
  EXPECT_THROW(fff::write_file_atomically(path,
                                          [](std::ostream& out) {
                                            out << std::string(200000, 'x');
                                            throw fff::Error("stopped half way");
                                          }),
               fff::Error);
  EXPECT_EQ(read_bytes(path), "old contents");
  EXPECT_EQ(names_in(dir_), std::vector<std::string>{"partial.bin"});
}

TEST_F(SafetensorsTest, AtomicWriteKeepsEveryByteOfMixedWrites) {
  // Small pieces through the buffer, large ones past it, across the buffer's boundaries.
  const std::string path = file("mixed.bin");
  std::string expect;
  fff::write_file_atomically(path, [&](std::ostream& out) {
    for (int i = 0; i < 300; ++i) {
      const std::string piece(static_cast<size_t>((i * 7919) % (i % 5 == 0 ? 200000 : 3000)),
                              static_cast<char>('a' + i % 26));
      out << piece;
      out.put('\n');
      expect += piece + '\n';
    }
  });
  EXPECT_EQ(read_bytes(path), expect);
}

TEST_F(SafetensorsTest, AtomicWriteFileModeFollowsTheUmask) {
  const std::string path = file("mode.bin");
  for (const mode_t mask : {mode_t{022}, mode_t{077}}) {
    const mode_t saved = ::umask(mask);
    fff::write_file_atomically(path, [](std::ostream& out) { out << "x"; });
    ::umask(saved);
    EXPECT_EQ(static_cast<mode_t>(fs::status(path).permissions()), 0666 & ~mask);
  }
}

TEST_F(SafetensorsTest, AtomicWritePastTheFileSizeLimitSaysSoAndKeepsOldFile) {
  // RLIMIT_FSIZE (ulimit -f) with SIGXFSZ ignored, as the fff command ignores it: write fails
  // with EFBIG, which the error must name.
  const std::string path = file("limit.safetensors");
  const fff::Tensor small = make_tensor({4}, 0.0f), big = make_tensor({100000}, 1.0f);
  fff::save_safetensors(path, {{"t", &small}}, {});
  const std::string before = read_bytes(path);
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  rlimit limited = saved;
  limited.rlim_cur = 65536;
  auto* old_handler = std::signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limited), 0);
  std::string msg;
  try {
    fff::save_safetensors(path, {{"t", &big}}, {});
  } catch (const fff::Error& e) {
    msg = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
  EXPECT_NE(msg.find(std::strerror(EFBIG)), std::string::npos) << msg;
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_EQ(names_in(dir_), std::vector<std::string>{"limit.safetensors"});
}

TEST_F(SafetensorsTest, MissingFile) {
  expect_load_error(file("missing.safetensors"), "cannot open");
}

TEST_F(SafetensorsTest, EmptyFile) {
  expect_bad("", "too short");
}

TEST_F(SafetensorsTest, FourByteFile) {
  expect_bad(std::string("\x10\0\0\0", 4), "too short");
}

TEST_F(SafetensorsTest, HeaderLengthLargerThanFile) {
  expect_bad(le64(1000) + "{}", "header length 1000 exceeds file size 10");
}

TEST_F(SafetensorsTest, HeaderLengthHuge) {
  expect_bad(le64(uint64_t{1} << 63) + "{}      ", "header length 9223372036854775808");
  expect_bad(le64(~uint64_t{0}) + "{}      ", "header length");
}

TEST_F(SafetensorsTest, HeaderNotJson) {
  expect_bad(make_file("{\"a\": ", 0), "not valid JSON");
}

TEST_F(SafetensorsTest, HeaderNotUtf8) {
  expect_bad(make_file("{\"__metadata__\":{\"k\":\"\xff\"}}", 0), "not valid JSON");
}

TEST_F(SafetensorsTest, HeaderIsArray) {
  expect_bad(make_file("[1, 2, 3]", 0), "not an object");
}

TEST_F(SafetensorsTest, DuplicateKeys) {
  expect_bad(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                       R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                       4),
             "duplicate key 'a'");
}

TEST_F(SafetensorsTest, DtypeF16) {
  expect_bad(make_file(R"({"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", 4),
             "tensor 'w' has dtype 'F16'; only F32 is supported");
}

TEST_F(SafetensorsTest, NegativeShape) {
  expect_bad(make_file(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
             "tensor 'w'");
}

TEST_F(SafetensorsTest, NonIntegerShape) {
  expect_bad(make_file(R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4),
             "tensor 'w'");
  expect_bad(make_file(R"({"w":{"dtype":"F32","shape":"1","data_offsets":[0,4]}})", 4),
             "tensor 'w'");
}

TEST_F(SafetensorsTest, ShapeOverflow) {
  expect_bad(make_file(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,4],)"
                       R"("data_offsets":[0,4]}})",
                       4),
             "tensor 'w'");
  expect_bad(make_file(R"({"w":{"dtype":"F32","shape":[18446744073709551615],)"
                       R"("data_offsets":[0,4]}})",
                       4),
             "tensor 'w'");
}

TEST_F(SafetensorsTest, OffsetsOutOfRange) {
  expect_bad(make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 8),
             "beyond the data area");
  expect_bad(make_file(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", 8),
             "begin > end");
  expect_bad(make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 8),
             "tensor 'w'");
  expect_bad(make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 8), "tensor 'w'");
}

TEST_F(SafetensorsTest, OffsetsLengthMismatchWithShape) {
  expect_bad(make_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
             "tensor 'w' has data_offsets [0, 8]");
}

TEST_F(SafetensorsTest, OverlappingTensors) {
  expect_bad(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                       12),
             "overlaps");
  // An empty tensor placed inside another one also counts as overlapping.
  expect_bad(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("b":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",
                       8),
             "overlaps");
}

TEST_F(SafetensorsTest, HoleInDataArea) {
  expect_bad(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                       R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                       12),
             "hole");
  expect_bad(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8),
             "not covered");
  expect_bad(make_file(R"({})", 4), "not covered");
}

TEST_F(SafetensorsTest, MetadataValueNotString) {
  expect_bad(make_file(R"({"__metadata__":{"k":1}})", 0), "__metadata__ value for 'k'");
  expect_bad(make_file(R"({"__metadata__":[]})", 0), "__metadata__ is not an object");
}

TEST_F(SafetensorsTest, UnknownOrMissingEntryKeys) {
  expect_bad(make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", 4),
             "unknown key 'x'");
  expect_bad(make_file(R"({"w":{"dtype":"F32","shape":[1]}})", 4), "missing \"data_offsets\"");
  expect_bad(make_file(R"({"w":[1]})", 4), "tensor 'w'");
}

TEST_F(SafetensorsTest, TruncatedData) {
  const fff::Tensor a = make_tensor({4, 4}, 1.0f);
  const std::string path = file("good.safetensors");
  fff::save_safetensors(path, {{"a", &a}}, {{"m", "x"}});
  const std::string bytes = read_bytes(path);
  expect_bad(bytes.substr(0, bytes.size() - 4), "tensor 'a'");
  // Trailing junk past the last tensor is a hole too.
  expect_bad(bytes + std::string(4, '\0'), "not covered");
}

TEST_F(SafetensorsTest, LoadDirectoryFails) {
  expect_load_error(dir_.string(), "");
}

// Random corruption must give either a successful load or an fff::Error, never a crash or
// another exception type.
TEST_F(SafetensorsTest, FuzzCorruptedFiles) {
  const fff::Tensor a = make_tensor({3, 2}, 1.0f);
  const fff::Tensor b = make_tensor({4}, -1.0f);
  fff::Tensor scalar(std::vector<int64_t>{});
  const fff::Tensor empty({0});
  const std::string good_path = file("good.safetensors");
  fff::save_safetensors(good_path, {{"a", &a}, {"b", &b}, {"s", &scalar}, {"e", &empty}},
                        {{"key", "value"}});
  const std::string good = read_bytes(good_path);
  const uint64_t header_len = read_le64(good);
  std::vector<size_t> digits;  // positions of digits in the header
  for (size_t i = 8; i < 8 + header_len; ++i)
    if (good[i] >= '0' && good[i] <= '9') digits.push_back(i);
  ASSERT_FALSE(digits.empty());

  fff::Rng rng(12345);
  const std::string path = file("fuzz.safetensors");
  int loaded = 0, rejected = 0;
  for (int iter = 0; iter < 2000; ++iter) {
    std::string bytes = good;
    const int kind = static_cast<int>(rng.below(5));
    const int count = 1 + static_cast<int>(rng.below(4));
    for (int k = 0; k < count; ++k) {
      if (kind == 0) {  // flip a byte anywhere
        bytes[rng.below(bytes.size())] ^= static_cast<char>(1 + rng.below(255));
      } else if (kind == 1) {  // flip a byte in the header
        bytes[8 + rng.below(header_len)] ^= static_cast<char>(1 + rng.below(255));
      } else if (kind == 2) {  // change a digit: keeps the JSON valid, exercises validation
        bytes[digits[rng.below(digits.size())]] = static_cast<char>('0' + rng.below(10));
      } else if (kind == 3) {  // flip a byte of the header length
        bytes[rng.below(8)] ^= static_cast<char>(1 + rng.below(255));
      } else {  // truncate
        bytes.resize(rng.below(bytes.size() + 1));
      }
    }
    write_bytes(path, bytes);
    try {
      const fff::SafetensorsFile f = fff::load_safetensors(path);
      for (const auto& [name, t] : f.tensors)
        EXPECT_EQ(static_cast<int64_t>(t.data.size()), fff::shape_numel(t.shape)) << name;
      ++loaded;
    } catch (const fff::Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind(path + ": ", 0), 0u) << e.what();
      ++rejected;
    } catch (const std::exception& e) {
      FAIL() << "iteration " << iter << ": unexpected exception type: " << e.what();
    } catch (...) {
      FAIL() << "iteration " << iter << ": unexpected non-std exception";
    }
  }
  EXPECT_GT(loaded, 0);
  EXPECT_GT(rejected, 0);
}

}  // namespace
