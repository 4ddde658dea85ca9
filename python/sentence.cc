// fff._SentenceModel: an fff-bert file's sentence embeddings from Python, through the library's
// bert_embed_sentences (the path `fff bert embed` and `fff serve` take), for fff.SentenceEncoder
// (python/fff/sentence.py). Strings cross as UTF-8; the GIL is released while encoding.
#include "fff/models/sentence.h"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fff/core/context.h"
#include "fff/models/bert.h"
#include "fff/text/wordpiece.h"

namespace py = pybind11;

namespace {

class SentenceModel {
 public:
  // threads 0: every core.
  SentenceModel(const std::string& path, int threads)
      : path_(path), model_(fff::load_bert(path)), tok_(fff::bert_model_tokenizer(model_, path)) {
    if (threads < 0)
      throw fff::Error("threads = " + std::to_string(threads) +
                       ": must be positive, or None for every core");
    ctx_ = fff::Context(threads > 0
                            ? threads
                            : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  }

  py::array_t<float> encode(const std::vector<std::string>& texts, int64_t batch_size,
                            bool normalize) {
    if (batch_size <= 0)
      throw fff::Error("batch_size = " + std::to_string(batch_size) + ": must be positive");
    fff::SentenceOptions o;
    o.batch = batch_size;
    o.normalize = normalize;
    fff::SentenceEmbeddings e;
    {
      py::gil_scoped_release release;
      // One context serves one call at a time.
      std::lock_guard<std::mutex> lock(mutex_);
      e = fff::bert_embed_sentences(ctx_, model_, tok_, texts, o);
    }
    py::array_t<float> out({static_cast<py::ssize_t>(e.rows), static_cast<py::ssize_t>(e.dim)});
    std::copy(e.values.begin(), e.values.end(), out.mutable_data());
    return out;
  }

  const std::string path_;
  const fff::BertModel model_;
  const fff::WordPieceTokenizer tok_;
  fff::Context ctx_;
  std::mutex mutex_;
};

}  // namespace

void bind_sentence(py::module_& m) {
  py::class_<SentenceModel>(m, "_SentenceModel")
      .def(py::init<const std::string&, int>(), py::arg("path"), py::arg("threads") = 0)
      .def("encode", &SentenceModel::encode, py::arg("texts"), py::arg("batch_size"),
           py::arg("normalize"))
      .def_readonly("path", &SentenceModel::path_)
      .def_property_readonly("threads", [](const SentenceModel& s) { return s.ctx_.threads; })
      .def_property_readonly("dim", [](const SentenceModel& s) { return s.model_.cfg.hidden; })
      .def_property_readonly(
          "max_seq_length",
          [](const SentenceModel& s) { return fff::bert_sentence_limit(s.model_); })
      .def_property_readonly("normalizes",
                             [](const SentenceModel& s) { return s.model_.normalize_embeddings; })
      .def_property_readonly("description",
                             [](const SentenceModel& s) { return s.model_.cfg.describe(); });
}
