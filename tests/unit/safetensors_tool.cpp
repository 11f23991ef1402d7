// safetensors_tool.cpp: a small command-line driver over the runtime's safetensors reader and writer, used by tests/unit/test_safetensors_io.py to check interoperability with Python.
//
// Usage:
//   safetensors_tool roundtrip IN OUT   read IN (validated) and write it to OUT, tensors in name order
//   safetensors_tool dump IN            print "name dtype shape" per tensor and "meta key=value" lines
//   safetensors_tool write-sample OUT   write a fixed sample file (all dtypes, a scalar, an empty tensor)
// Errors print the DataError message to stderr and exit with status 1; bad usage exits with 2.
//
// The main function is compiled only with GRADC_SAFETENSORS_TOOL_MAIN defined (the CMake
// target safetensors_tool defines it), so this file is harmless if a glob of tests/unit/*.cpp
// pulls it into the GoogleTest binary.
#ifdef GRADC_SAFETENSORS_TOOL_MAIN

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "Safetensors.h"

using namespace gradc::rt;

namespace {

/// Writes the sample file whose contents test_safetensors_io.py expects.
void writeSample(const std::string &path) {
  HostTensor a(DType::F32, {2, 3});
  for (int i = 0; i < 6; ++i) a.f32()[i] = 0.5f * static_cast<float>(i) - 1.0f;
  HostTensor b(DType::F64, {3});
  b.f64()[0] = 3.141592653589793;
  b.f64()[1] = -2.5e-300;
  b.f64()[2] = 1e300;
  HostTensor c(DType::I32, {2, 2});
  const int32_t cv[] = {-2147483647 - 1, -1, 0, 2147483647};
  for (int i = 0; i < 4; ++i) c.i32()[i] = cv[i];
  HostTensor d(DType::I64, {});
  d.i64()[0] = -9007199254740993LL;
  HostTensor e(DType::F32, {0, 4});
  std::vector<std::pair<std::string, const HostTensor *>> list = {
      {"layer.weight", &a}, {"layer.bias", &b}, {"counts", &c}, {"step", &d}, {"empty", &e}};
  writeSafetensors(path, list, {{"format", "pt"}, {"note", "gr\xC3\xA4" "dc \"sample\""}});
}

} // namespace

/// Entry point: see the usage at the top of the file.
int main(int argc, char **argv) {
  try {
    if (argc == 4 && std::strcmp(argv[1], "roundtrip") == 0) {
      SafetensorsMetadata meta;
      auto tensors = readSafetensors(argv[2], &meta);
      std::vector<std::pair<std::string, const HostTensor *>> list;
      for (const auto &kv : tensors) list.emplace_back(kv.first, &kv.second);
      writeSafetensors(argv[3], list, meta);
      return 0;
    }
    if (argc == 3 && std::strcmp(argv[1], "dump") == 0) {
      SafetensorsMetadata meta;
      auto tensors = readSafetensors(argv[2], &meta);
      for (const auto &kv : tensors) std::printf("%s %s\n", kv.first.c_str(), kv.second.typeString().c_str());
      for (const auto &kv : meta) std::printf("meta %s=%s\n", kv.first.c_str(), kv.second.c_str());
      return 0;
    }
    if (argc == 3 && std::strcmp(argv[1], "write-sample") == 0) {
      writeSample(argv[2]);
      return 0;
    }
  } catch (const DataError &e) {
    std::fprintf(stderr, "safetensors_tool: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "usage: safetensors_tool roundtrip IN OUT | dump IN | write-sample OUT\n");
  return 2;
}

#endif // GRADC_SAFETENSORS_TOOL_MAIN
