// FuzzText.cpp: libFuzzer target for the UTF-8 text reader and the checkpoint's vocabulary metadata: any bytes either load or give a DataError; loaded windows index the vocabulary, y is x shifted by one character, and a decoded vocabulary survives an encode/decode round trip.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "DataMeta.h"
#include "DataSources.h"

using namespace gradc::rt;

/// libFuzzer entry point. Byte 0 chooses the length, byte 1 the split, byte 2 the length M
/// of a gradc.vocabulary value in bytes 3 .. 3+M (none if M = 0); the rest is the text.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3) return 0;
  const int64_t L = 1 + data[0] % 8;
  const double split = (1 + data[1]) / 256.0;
  const size_t m = std::min<size_t>(data[2], size - 3);
  DataMeta meta;
  if (m > 0) {
    try {
      meta = decodeDataMeta({{kVocabularyKey, std::string(reinterpret_cast<const char *>(data) + 3, m)}}, "fuzz.ckpt");
    } catch (const DataError &) {
      return 0;
    }
    if (!meta.hasVocabulary || meta.vocabulary.empty()) std::abort();
    SafetensorsMetadata again;
    encodeDataMeta(meta, again);
    if (decodeDataMeta(again, "fuzz.ckpt").vocabulary != meta.vocabulary) std::abort();
  }
  const unsigned char *text = data + 3 + m;
  const size_t textSize = size - 3 - m;
  Dataset d;
  try {
    d = parseText(text, textSize, L, split, "fuzz.txt", meta.hasVocabulary ? &meta.vocabulary : nullptr);
  } catch (const DataError &) {
    return 0;
  }
  const std::vector<uint32_t> cps = decodeUtf8(text, textSize, "fuzz.txt"); // succeeded above
  const int64_t n = (static_cast<int64_t>(cps.size()) - 1) / L;
  if (d.n != n || d.trainCount < 1 || d.trainCount > n || !d.x.consistent() || !d.y.consistent() ||
      d.x.shape != std::vector<int64_t>{n, L} || d.y.shape != std::vector<int64_t>{n, L} || d.vocabulary.empty() ||
      !std::is_sorted(d.vocabulary.begin(), d.vocabulary.end()) ||
      std::adjacent_find(d.vocabulary.begin(), d.vocabulary.end()) != d.vocabulary.end())
    std::abort();
  const int32_t *x = d.x.i32();
  const int32_t *y = d.y.i32();
  const int64_t V = static_cast<int64_t>(d.vocabulary.size());
  for (int64_t i = 0; i < n * L; ++i) {
    if (x[i] < 0 || x[i] >= V || y[i] < 0 || y[i] >= V) std::abort();
    if (d.vocabulary[static_cast<size_t>(x[i])] != cps[static_cast<size_t>(i)]) std::abort();
    if (d.vocabulary[static_cast<size_t>(y[i])] != cps[static_cast<size_t>(i + 1)]) std::abort();
  }
  return 0;
}
