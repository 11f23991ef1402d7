// FuzzIdx.cpp: libFuzzer target for the IDX image/label parsers and gzip decompression: any bytes either load or give a DataError, and a loaded data set is consistent.
#include <cstdint>
#include <cstdlib>

#include "DataSources.h"

using namespace gradc::rt;

/// libFuzzer entry point. Bytes 0-1 (little-endian) give the length of the image file,
/// byte 2 the number of classes; the image file follows, then the label file.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3) return 0;
  size_t imagesSize = data[0] | (size_t(data[1]) << 8);
  const int64_t classes = data[2] == 0 ? 10 : data[2];
  const unsigned char *rest = data + 3;
  const size_t restSize = size - 3;
  if (imagesSize > restSize) imagesSize = restSize;
  try {
    Dataset d = parseIdx(rest, imagesSize, rest + imagesSize, restSize - imagesSize, "fuzz-images", "fuzz-labels",
                         classes);
    if (d.n < 1 || d.x.shape.size() != 3 || d.y.shape.size() != 1 || d.x.shape[0] != d.n || d.y.shape[0] != d.n ||
        !d.x.consistent() || !d.y.consistent())
      std::abort();
    for (int64_t i = 0; i < d.n; ++i)
      if (d.y.i32()[i] < 0 || d.y.i32()[i] >= classes) std::abort();
  } catch (const DataError &) {
  }
  // The whole input as a gzip stream, with a small output limit.
  if (isGzip(data, size)) {
    try {
      (void)gunzip(data, size, "fuzz.gz", 1 << 20);
    } catch (const DataError &) {
    }
  }
  return 0;
}
