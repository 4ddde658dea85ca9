// Dataset readers (IDX / MNIST format, gzipped or raw; CIFAR-10 binary) and standardisation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fff/core/common.h"

namespace fff {

// A labelled classification dataset: x is (n, features) float, y holds n labels in
// [0, num_classes).
struct Dataset {
  Tensor x;
  std::vector<int32_t> y;
  int num_classes = 0;
  // When each row is an image (as the readers know it): height x width pixels of `channels`
  // planes, a row holding plane 0's pixels row by row, then plane 1's, ... (IDX (n, h, w):
  // channels 1; CIFAR-10: 32 x 32 x 3, red, green, blue). All 0 when the rows are not known to
  // be images.
  int64_t image_height = 0, image_width = 0, image_channels = 0;

  int64_t size() const { return static_cast<int64_t>(y.size()); }
  int64_t features() const { return x.cols(); }
};

struct TrainTest {
  Dataset train, test;
  std::string name;  // e.g. "fashion-mnist" or the directory given
};

// Raw contents of an IDX file of unsigned bytes (type code 0x08), the only type MNIST-style
// data sets use. Throws fff::Error naming the file for: missing/unreadable file, corrupt gzip,
// bad magic, unsupported type code, zero or too many dimensions, or a payload shorter or longer
// than the dimensions say.
struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> values;
};
IdxArray read_idx(const std::string& path);

// Reads whole file, transparently gunzipping if it starts with the gzip magic.
std::vector<uint8_t> read_file_maybe_gzip(const std::string& path);

// Images (n, h, w) or (n, features) IDX + labels (n) IDX -> Dataset with pixels scaled to
// [0, 1] (an (n, h, w) file's rows are marked as h x w images). Errors name the files on count
// mismatch or labels >= 256.
Dataset load_idx_pair(const std::string& images_path, const std::string& labels_path);

// A directory holding train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
// t10k-labels-idx1-ubyte, each optionally with a .gz suffix.
TrainTest load_idx_dir(const std::string& dir);

// CIFAR-10 binary format: records of 1 label byte + 3072 pixel bytes. Errors name the file when
// its size is not a positive multiple of 3073 or a label is > 9.
Dataset load_cifar10_file(const std::string& path);
// Directory with data_batch_1.bin .. data_batch_5.bin and test_batch.bin.
TrainTest load_cifar10_dir(const std::string& dir);

// "fashion-mnist" -> /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist);
// otherwise a directory, recognised as IDX or CIFAR-10 by the files it holds. Errors say what was
// looked for.
TrainTest load_dataset(const std::string& name_or_dir);

// Global (scalar) mean and standard deviation of all values of x.
struct Standardization {
  float mean = 0.0f;
  float std = 1.0f;
};
Standardization compute_standardization(const Tensor& x);
void apply_standardization(Tensor& x, const Standardization& s);

// The first `n` rows (or all, if fewer) of d, for quick runs and tests.
Dataset take_rows(const Dataset& d, int64_t n);
// Rows listed in `index`, in that order.
Dataset gather_rows(const Dataset& d, const std::vector<int64_t>& index);

}  // namespace fff
