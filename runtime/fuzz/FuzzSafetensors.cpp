// FuzzSafetensors.cpp: libFuzzer target for the safetensors reader, the JSON parser and the resume metadata of checkpoints: any bytes either parse or give a DataError, and whatever parses re-serializes to a file that parses back to the same tensors.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "Json.h"
#include "Resume.h"
#include "Safetensors.h"

using namespace gradc::rt;

/// libFuzzer entry point.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  try {
    (void)parseJson(std::string_view(reinterpret_cast<const char *>(data), size));
  } catch (const DataError &) {
  }
  SafetensorsMetadata meta;
  std::map<std::string, HostTensor> tensors;
  try {
    tensors = parseSafetensors(data, size, "fuzz.safetensors", &meta);
  } catch (const DataError &) {
    return 0;
  }
  // What --resume and --load do with a checkpoint's metadata: decode the position, verify the checksum.
  std::vector<std::pair<std::string, const HostTensor *>> list;
  for (const auto &kv : tensors) list.emplace_back(kv.first, &kv.second);
  try {
    ResumeState r;
    (void)decodeResume(meta, "fuzz.safetensors", r);
  } catch (const DataError &) {
  }
  try {
    verifyChecksum("fuzz.safetensors", meta, list);
  } catch (const DataError &) {
  }
  list.clear();
  // Round trip: serialize what was read and read it back.
  for (const auto &kv : tensors) {
    if (!kv.second.consistent()) {
      std::fprintf(stderr, "inconsistent tensor '%s'\n", kv.first.c_str());
      std::abort();
    }
    list.emplace_back(kv.first, &kv.second);
  }
  std::vector<unsigned char> again = serializeSafetensors(list, meta, "fuzz-roundtrip");
  SafetensorsMetadata meta2;
  std::map<std::string, HostTensor> back = parseSafetensors(again.data(), again.size(), "fuzz-roundtrip", &meta2);
  if (meta2 != meta || back.size() != tensors.size()) std::abort();
  for (const auto &kv : tensors) {
    auto it = back.find(kv.first);
    if (it == back.end() || it->second.dtype != kv.second.dtype || it->second.shape != kv.second.shape ||
        it->second.bytes != kv.second.bytes)
      std::abort();
  }
  return 0;
}
