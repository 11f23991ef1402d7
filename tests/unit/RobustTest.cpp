// RobustTest.cpp: unit tests of the robustness pieces of the runtime: resume metadata (runtime/Resume.h), checkpoint checksums, cleanup after killed writers, the SIGINT/SIGTERM guard (runtime/Interrupt.h) and the non-finite scans (runtime/FiniteCheck.h).
#include <cmath>
#include <csignal>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <zlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "FiniteCheck.h"
#include "Interrupt.h"
#include "Resume.h"

namespace gradc::rt {
namespace {

namespace fs = std::filesystem;

TEST(Resume, MetadataRoundTripsExactly) {
  ResumeState r;
  r.model = "tiny";
  r.seed = 0xFFFFFFFFFFFFFFF0ull;
  r.shuffle = false;
  r.lr = 0.1;
  r.batch = 16;
  r.trainCount = 1821;
  r.dataHash = 0x0123456789ABCDEFull;
  r.epoch = 3;
  r.epochStep = 57;
  r.step = 283;
  r.orderHash = 42;
  r.epochLossSum = 1.0 / 3.0;
  r.ran = true;
  r.finalLoss = 1e-300;
  r.finalVal = -0.0;
  r.lastEval = std::nan("");
  r.lastEvalStep = 280;
  r.bestVal = std::numeric_limits<double>::infinity();
  r.bestEpoch = 2;
  r.bad = 1;
  r.hasBest = true;
  SafetensorsMetadata m{{"format", "pt"}};
  encodeResume(r, m);
  ResumeState b;
  ASSERT_TRUE(decodeResume(m, "x.safetensors", b));
  EXPECT_EQ(b.model, r.model);
  EXPECT_EQ(b.seed, r.seed);
  EXPECT_EQ(b.shuffle, r.shuffle);
  EXPECT_EQ(b.lr, r.lr);
  EXPECT_EQ(b.dataHash, r.dataHash);
  EXPECT_EQ(b.epoch, 3);
  EXPECT_EQ(b.epochStep, 57);
  EXPECT_EQ(b.step, 283);
  EXPECT_EQ(b.epochLossSum, r.epochLossSum); // bitwise: hexadecimal floats
  EXPECT_EQ(b.finalLoss, 1e-300);
  EXPECT_TRUE(std::signbit(b.finalVal));
  EXPECT_TRUE(std::isnan(b.lastEval));
  EXPECT_TRUE(std::isinf(b.bestVal));
  EXPECT_EQ(b.bestEpoch, 2);
  EXPECT_TRUE(b.hasBest);
}

TEST(Resume, AbsentOrMalformedMetadata) {
  ResumeState r;
  EXPECT_FALSE(decodeResume({{"format", "pt"}}, "x", r));
  SafetensorsMetadata m;
  ResumeState ok;
  ok.batch = 1;
  encodeResume(ok, m);
  EXPECT_TRUE(decodeResume(m, "ckpt", r));
  m["gradc.epoch_step"] = "12x";
  try {
    decodeResume(m, "ckpt.safetensors", r);
    FAIL() << "no error";
  } catch (const DataError &e) {
    EXPECT_NE(std::string(e.what()).find("ckpt.safetensors: the checkpoint's resume value 'gradc.epoch_step' = '12x'"),
              std::string::npos)
        << e.what();
  }
  m.erase("gradc.epoch_step");
  EXPECT_THROW(decodeResume(m, "ckpt", r), DataError);
}

TEST(Resume, ChecksumCoversNamesShapesAndBytesNotOrder) {
  HostTensor a(DType::F32, {2}), b(DType::I64, {1});
  a.f32()[0] = 1;
  const uint64_t h = checksumTensors({{"a", &a}, {"b", &b}});
  EXPECT_EQ(h, checksumTensors({{"b", &b}, {"a", &a}}));
  EXPECT_NE(h, checksumTensors({{"a", &a}, {"c", &b}}));
  a.f32()[1] = 1e-45f; // one bit
  EXPECT_NE(h, checksumTensors({{"a", &a}, {"b", &b}}));
  a.f32()[1] = 0;
  a.shape = {2, 1};
  EXPECT_NE(h, checksumTensors({{"a", &a}, {"b", &b}}));
}

// The checksum is zlib's crc32 over the bytes docs/robustness.md lists, built here by hand.
TEST(Resume, ChecksumIsCrc32OfTheDocumentedBytes) {
  HostTensor a(DType::F32, {2, 1}), b(DType::I64, {1});
  a.f32()[0] = 1.5f;
  b.i64()[0] = -3;
  std::string bytes;
  auto u64 = [&](uint64_t v) {
    for (int k = 0; k < 8; ++k) bytes += static_cast<char>((v >> (8 * k)) & 0xff);
  };
  auto entry = [&](const std::string &name, const char *dtype, const HostTensor &t) {
    u64(name.size());
    bytes += name;
    u64(std::strlen(dtype));
    bytes += dtype;
    u64(t.shape.size());
    for (int64_t d : t.shape) u64(static_cast<uint64_t>(d));
    u64(t.bytes.size());
    bytes.append(reinterpret_cast<const char *>(t.bytes.data()), t.bytes.size());
  };
  entry("a", "F32", a); // name order, whatever the order given
  entry("b", "I64", b);
  const uLong want = ::crc32(0L, reinterpret_cast<const Bytef *>(bytes.data()), static_cast<uInt>(bytes.size()));
  EXPECT_EQ(checksumTensors({{"b", &b}, {"a", &a}}), static_cast<uint32_t>(want));
}

// Checkpoints of earlier versions carry only the gradc-hash64 checksum: still verified.
TEST(Resume, LegacyChecksumIsStillVerified) {
  HostTensor a(DType::F32, {3});
  a.f32()[2] = 2;
  const std::vector<std::pair<std::string, const HostTensor *>> t = {{"a", &a}};
  char legacy[32];
  std::snprintf(legacy, sizeof legacy, "%016llx", static_cast<unsigned long long>(legacyChecksumTensors(t)));
  SafetensorsMetadata meta{{kLegacyChecksumKey, legacy}};
  EXPECT_NO_THROW(verifyChecksum("old.safetensors", meta, t));
  a.f32()[2] = 3;
  EXPECT_THROW(verifyChecksum("old.safetensors", meta, t), DataError);
  // Both present (a file an earlier version wrote, then re-saved by hand): both must match.
  a.f32()[2] = 2;
  char crc[16];
  std::snprintf(crc, sizeof crc, "%08x", checksumTensors(t));
  meta[kChecksumKey] = crc;
  EXPECT_NO_THROW(verifyChecksum("old.safetensors", meta, t));
  meta[kLegacyChecksumKey] = "0000000000000000";
  EXPECT_THROW(verifyChecksum("old.safetensors", meta, t), DataError);
}

TEST(Resume, StaleTemporariesOfDeadWritersAreRemoved) {
  const fs::path dir = fs::temp_directory_path() / ("gradc-robust-test-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string ckpt = (dir / "c.safetensors").string();
  // A pid that is not running: a child that has exited and been reaped.
  pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  int status = 0;
  ::waitpid(dead, &status, 0);
  const std::string stale = ckpt + ".tmp." + std::to_string(dead);
  const std::string live = ckpt + ".tmp." + std::to_string(::getppid()); // a running process
  const std::string other = (dir / "d.safetensors.tmp.1").string();
  for (const std::string &f : {stale, live, other}) std::ofstream(f) << "x";
  removeStaleTemporaries(ckpt);
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(other));
  fs::remove_all(dir);
}

TEST(Interrupt, SignalsAreRecordedWhileGuarded) {
  {
    InterruptGuard g;
    EXPECT_EQ(InterruptGuard::pending(), 0);
    std::raise(SIGTERM);
    EXPECT_EQ(InterruptGuard::pending(), SIGTERM);
    std::raise(SIGINT); // after the first signal the default action is back: ignore it here
    InterruptGuard::clear();
  }
  EXPECT_STREQ(signalName(SIGINT), "SIGINT");
  EXPECT_STREQ(signalName(SIGTERM), "SIGTERM");
}

TEST(FiniteCheck, IndexAndValueText) {
  EXPECT_EQ(elementIndex({4, 3}, 7), "[2, 1]");
  EXPECT_EQ(elementIndex({}, 0), "");
  EXPECT_EQ(nonFiniteText(std::nan("")), "nan");
  EXPECT_EQ(nonFiniteText(-INFINITY), "-inf");
  ModelSpec spec;
  spec.state.push_back({"head.weight", StateSpec::Param, DType::F32, {2, 2}, StateSpec::Zeros, 0, 0, -1, "layer head, m.model:3"});
  std::vector<std::vector<double>> grads = {{0, 1, INFINITY, 0}};
  auto g = firstNonFiniteGradient(spec, grads);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->tensor, "gradient of parameter 'head.weight'");
  EXPECT_EQ(g->index, "[1, 0]");
  EXPECT_EQ(g->where, "layer head, m.model:3");
  grads[0][2] = 0;
  EXPECT_FALSE(firstNonFiniteGradient(spec, grads));
}

} // namespace
} // namespace gradc::rt
