// RuntimeIOTest.cpp: GoogleTest unit tests of the runtime's I/O: the JSON parser, safetensors reading and writing, CSV windows, IDX loading and safetensors tensors, including every kind of malformed input.
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <unistd.h>
#include <zlib.h>

#include <gtest/gtest.h>

#include "DataSources.h"
#include "Json.h"
#include "Safetensors.h"

using namespace gradc::rt;
namespace fs = std::filesystem;

namespace {

/// Runs `f`; returns the DataError message, or a marker if it did not throw DataError.
std::string errorOf(const std::function<void()> &f) {
  try {
    f();
  } catch (const DataError &e) {
    return e.what();
  } catch (const std::exception &e) {
    return std::string("<not a DataError: ") + e.what() + ">";
  }
  return "<no error>";
}

#define EXPECT_ERROR(stmt, substr)                                                                                  \
  do {                                                                                                              \
    std::string msg_ = errorOf([&] { stmt; });                                                                      \
    EXPECT_NE(msg_.find(substr), std::string::npos) << "message: " << msg_ << "\nexpected to contain: " << (substr); \
  } while (0)

/// A fresh temporary directory, removed with its contents at the end of the test.
class TempDir {
public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("gradc-rt-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string &name) const { return (path_ / name).string(); }
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto &e : fs::directory_iterator(path_)) out.push_back(e.path().filename().string());
    return out;
  }

private:
  fs::path path_;
};

void writeBytes(const std::string &path, const std::string &bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string readBytes(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

/// A safetensors file from a header text (padded here) and data bytes.
std::string makeSafetensors(std::string header, const std::string &data, bool pad = true) {
  if (pad) header.append((8 - header.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int k = 0; k < 8; ++k) out[k] = static_cast<char>(n >> (8 * k));
  return out + header + data;
}

std::map<std::string, HostTensor> parseST(const std::string &bytes, SafetensorsMetadata *meta = nullptr) {
  return parseSafetensors(reinterpret_cast<const unsigned char *>(bytes.data()), bytes.size(), "t.safetensors",
                          meta);
}

HostTensor f32Tensor(std::vector<int64_t> shape, std::vector<float> values) {
  HostTensor t(DType::F32, std::move(shape));
  std::memcpy(t.bytes.data(), values.data(), values.size() * 4);
  return t;
}

/// gzip-compresses bytes (one member).
std::string gzipBytes(const std::string &in) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&zs, in.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef *>(const_cast<char *>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef *>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::string be32(uint32_t v) {
  std::string s(4, '\0');
  for (int k = 0; k < 4; ++k) s[k] = static_cast<char>(v >> (24 - 8 * k));
  return s;
}

/// An IDX image file of `n` images of rows x cols with pixel (i, j) = (i * 7 + j) % 256.
std::string idxImages(uint32_t n, uint32_t rows, uint32_t cols) {
  std::string s = be32(0x803) + be32(n) + be32(rows) + be32(cols);
  for (uint32_t i = 0; i < n; ++i)
    for (uint32_t j = 0; j < rows * cols; ++j) s += static_cast<char>((i * 7 + j) % 256);
  return s;
}

std::string idxLabels(const std::vector<int> &labels) {
  std::string s = be32(0x801) + be32(static_cast<uint32_t>(labels.size()));
  for (int l : labels) s += static_cast<char>(l);
  return s;
}

Dataset parseIdxStrings(const std::string &images, const std::string &labels, int64_t classes = 10) {
  return parseIdx(reinterpret_cast<const unsigned char *>(images.data()), images.size(),
                  reinterpret_cast<const unsigned char *>(labels.data()), labels.size(), "img.idx", "lab.idx",
                  classes);
}

std::vector<double> csv(const std::string &text, const std::string &column = "value",
                        std::vector<int64_t> *lines = nullptr) {
  return parseCsvColumn(text, column, "data.csv", lines);
}

} // namespace

// ===================================================================================== JSON

TEST(RuntimeJson, ParsesValues) {
  JsonValue v = parseJson(R"( {"a": [1, -2.5e3, true, false, null], "s": "x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"} )");
  ASSERT_EQ(v.kind, JsonValue::Kind::Object);
  ASSERT_EQ(v.members.size(), 2u);
  const JsonValue *a = v.find("a");
  ASSERT_NE(a, nullptr);
  ASSERT_EQ(a->items.size(), 5u);
  int64_t i = 0;
  EXPECT_TRUE(a->items[0].asInt64(i));
  EXPECT_EQ(i, 1);
  double d = 0;
  EXPECT_FALSE(a->items[1].asInt64(i));
  EXPECT_TRUE(a->items[1].asDouble(d));
  EXPECT_EQ(d, -2500.0);
  EXPECT_EQ(a->items[2].kind, JsonValue::Kind::Bool);
  EXPECT_TRUE(a->items[2].boolean);
  EXPECT_EQ(a->items[4].kind, JsonValue::Kind::Null);
  EXPECT_EQ(v.find("s")->text, "x\"\\/\b\f\n\r\t\xC3\xA9\xF0\x9F\x98\x80");
  EXPECT_EQ(v.find("a")->offset, 7u);
}

TEST(RuntimeJson, RejectsMalformedWithOffsets) {
  EXPECT_ERROR(parseJson(R"({"a" 1})"), "expected ':', found '1' at byte 5");
  EXPECT_ERROR(parseJson(R"({"a":1 "b":2})"), "expected ',' or '}', found '\"' at byte 7");
  EXPECT_ERROR(parseJson(R"({"a":1,})"), "expected a string (an object key), found '}' at byte 7");
  EXPECT_ERROR(parseJson("[1,]"), "expected a value, found ']' at byte 3");
  EXPECT_ERROR(parseJson("[1 2]"), "expected ',' or ']'");
  EXPECT_ERROR(parseJson("{'a':1}"), "expected a string (an object key)");
  EXPECT_ERROR(parseJson("[NaN]"), "expected a value");
  EXPECT_ERROR(parseJson("[01]"), "leading zeros");
  EXPECT_ERROR(parseJson("[1.]"), "expected a digit after '.'");
  EXPECT_ERROR(parseJson("[1e]"), "expected a digit in the exponent");
  EXPECT_ERROR(parseJson("[-]"), "expected a digit");
  EXPECT_ERROR(parseJson("\"abc"), "string is not terminated");
  EXPECT_ERROR(parseJson(R"("\x")"), "invalid escape");
  EXPECT_ERROR(parseJson(R"("\u12g4")"), "expected a hex digit");
  EXPECT_ERROR(parseJson(R"("\ud83d")"), "lone high surrogate");
  EXPECT_ERROR(parseJson(R"("\ude00")"), "lone low surrogate");
  EXPECT_ERROR(parseJson(R"("\ud83d\u0041")"), "expected a low surrogate");
  EXPECT_ERROR(parseJson("\"a\tb\""), "control characters must be escaped");
  EXPECT_ERROR(parseJson("\"\xC0\xAF\""), "invalid UTF-8");
  EXPECT_ERROR(parseJson("\"\xED\xA0\x80\""), "invalid UTF-8");
  EXPECT_ERROR(parseJson("tru"), "expected 'true'");
  EXPECT_ERROR(parseJson("{} x"), "expected the end of the JSON text after the value, found 'x' at byte 3");
  EXPECT_ERROR(parseJson(""), "expected a value, found the end of the text at byte 0");
  EXPECT_ERROR(parseJson("[1", 100), "expected ',' or ']', found the end of the text at byte 102");
}

TEST(RuntimeJson, DepthLimit) {
  std::string ok = std::string(64, '[') + std::string(64, ']');
  EXPECT_NO_THROW(parseJson(ok));
  std::string deep = std::string(65, '[') + std::string(65, ']');
  EXPECT_ERROR(parseJson(deep), "nesting deeper than 64 levels at byte 64");
  std::string veryDeep(1000000, '[');
  EXPECT_ERROR(parseJson(veryDeep), "nesting deeper than 64");
}

TEST(RuntimeJson, QuoteRoundTrips) {
  std::string s = "a\"b\\c\n\x01\xC3\xA9/";
  EXPECT_EQ(jsonQuote(s), "\"a\\\"b\\\\c\\n\\u0001\xC3\xA9/\"");
  EXPECT_EQ(parseJson(jsonQuote(s)).text, s);
}

// =============================================================================== safetensors

TEST(RuntimeSafetensors, RoundTripAllDTypes) {
  TempDir tmp;
  HostTensor a = f32Tensor({2, 3}, {1, 2, 3, 4, 5, -6.5f});
  HostTensor b(DType::F64, {2});
  b.f64()[0] = 1e-300;
  b.f64()[1] = -0.0;
  HostTensor c(DType::I32, {3});
  c.i32()[0] = -7;
  c.i32()[2] = 1 << 30;
  HostTensor d(DType::I64, {});
  d.i64()[0] = (int64_t(1) << 60) + 3;
  HostTensor e(DType::F32, {0, 5});
  const std::string path = tmp.file("ckpt.safetensors");
  writeSafetensors(path, {{"z.weight", &a}, {"a.bias", &b}, {"counts", &c}, {"step", &d}, {"empty", &e}},
                   {{"format", "pt"}, {"k\n", "v\"\\"}});
  EXPECT_EQ(tmp.entries(), std::vector<std::string>{"ckpt.safetensors"}); // no temporary left

  // Layout: padded header, tensors in the given order.
  std::string raw = readBytes(path);
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = (n << 8) | static_cast<unsigned char>(raw[k]);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(raw.size(), 8 + n + 24 + 16 + 12 + 8);
  EXPECT_EQ(raw.substr(8 + n, 24), std::string(reinterpret_cast<const char *>(a.bytes.data()), 24));
  EXPECT_NE(raw.find("\"z.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}"), std::string::npos);

  SafetensorsMetadata meta;
  auto back = readSafetensors(path, &meta);
  ASSERT_EQ(back.size(), 5u);
  EXPECT_EQ(meta.at("format"), "pt");
  EXPECT_EQ(meta.at("k\n"), "v\"\\");
  for (auto [name, t] : std::vector<std::pair<std::string, const HostTensor *>>{
           {"z.weight", &a}, {"a.bias", &b}, {"counts", &c}, {"step", &d}, {"empty", &e}}) {
    const HostTensor &got = back.at(name);
    EXPECT_EQ(got.dtype, t->dtype) << name;
    EXPECT_EQ(got.shape, t->shape) << name;
    EXPECT_EQ(got.bytes, t->bytes) << name;
  }
  EXPECT_EQ(back.at("step").i64()[0], (int64_t(1) << 60) + 3);
  EXPECT_EQ(back.at("step").numel(), 1);
  EXPECT_ERROR((void)back.at("step").f32(), "tensor has dtype I64, not F32");

  // Overwriting an existing file replaces it atomically.
  writeSafetensors(path, {{"only", &c}});
  EXPECT_EQ(readSafetensors(path).size(), 1u);
  EXPECT_EQ(tmp.entries().size(), 1u);
}

TEST(RuntimeSafetensors, WriteFailuresLeaveNothingBehind) {
  TempDir tmp;
  HostTensor a = f32Tensor({2}, {1, 2});
  EXPECT_ERROR(writeSafetensors(tmp.file("no/such/dir/x.safetensors"), {{"a", &a}}),
               "no/such/dir/x.safetensors: cannot create the temporary file");
  // Renaming over a directory fails: the temporary must be removed.
  fs::create_directories(tmp.file("adir/sub"));
  EXPECT_ERROR(writeSafetensors(tmp.file("adir"), {{"a", &a}}), "adir: cannot rename the temporary file over it");
  EXPECT_EQ(tmp.entries(), std::vector<std::string>{"adir"});

  HostTensor bad = f32Tensor({2}, {1, 2});
  bad.shape = {3};
  EXPECT_ERROR(writeSafetensors(tmp.file("x"), {{"bad", &bad}}), "it has 8 bytes, which does not match F32[3]");
  EXPECT_ERROR(writeSafetensors(tmp.file("x"), {{"a", &a}, {"a", &a}}), "duplicate tensor name");
  EXPECT_ERROR(writeSafetensors(tmp.file("x"), {{"__metadata__", &a}}), "reserved");
  EXPECT_ERROR(writeSafetensors(tmp.file("x"), {{"n", nullptr}}), "null pointer");
  EXPECT_ERROR(writeSafetensors(tmp.file("x"), {{"\xff", &a}}), "not valid UTF-8");
  EXPECT_EQ(tmp.entries(), std::vector<std::string>{"adir"});
}

TEST(RuntimeSafetensors, EveryTruncationIsAnError) {
  HostTensor a = f32Tensor({2, 2}, {1, 2, 3, 4});
  HostTensor b(DType::I64, {3});
  HostTensor e(DType::F64, {0});
  std::vector<unsigned char> good = serializeSafetensors({{"a", &a}, {"e", &e}, {"b", &b}}, {{"m", "v"}});
  ASSERT_NO_THROW(parseSafetensors(good.data(), good.size(), "t.safetensors"));
  for (size_t len = 0; len < good.size(); ++len) {
    std::vector<unsigned char> prefix(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(len));
    std::string msg = errorOf([&] { parseSafetensors(prefix.data(), prefix.size(), "t.safetensors"); });
    EXPECT_EQ(msg.rfind("t.safetensors: byte ", 0), 0u) << "prefix " << len << ": " << msg;
  }
  // One extra byte is an error too.
  good.push_back(0);
  EXPECT_ERROR(parseSafetensors(good.data(), good.size(), "t.safetensors"), "1 bytes after the last tensor's data");
}

TEST(RuntimeSafetensors, HeaderErrors) {
  const std::string d16(16, '\0');
  EXPECT_ERROR(parseST("abc"), "t.safetensors: byte 0: file is too short for a safetensors file");
  std::string huge(16, '\0');
  huge[4] = 1; // 2^32
  EXPECT_ERROR(parseST(huge), "t.safetensors: byte 0: header length 4294967296 exceeds the limit of 100000000");
  std::string past = makeSafetensors("{}", "");
  past[0] = 9;
  EXPECT_ERROR(parseST(past), "byte 0: header length 9 runs past the end of the file (only 8 bytes follow");
  EXPECT_ERROR(parseST(std::string(8, '\0')), "byte 8: header is empty");
  // The example from the runtime's contract: a JSON error with the absolute byte offset.
  EXPECT_ERROR(parseST(makeSafetensors(R"({"a":{"dtype":"F32" "shape":[1]}})", "")),
               "t.safetensors: byte 8: header is not valid JSON: expected ',' or '}', found '\"' at byte 28");
  EXPECT_ERROR(parseST(makeSafetensors("[]", "")), "byte 8: header must be a JSON object, found an array");
  EXPECT_ERROR(parseST(makeSafetensors("{}\x01", "")), "header is not valid JSON");
  EXPECT_ERROR(parseST(makeSafetensors(std::string(70, '[') + std::string(70, ']'), "")), "nesting deeper than 64");
  // Empty header object: no tensors, no data.
  EXPECT_TRUE(parseST(makeSafetensors("{}", "")).empty());
  EXPECT_ERROR(parseST(makeSafetensors("{}", "x")), "1 bytes after the last tensor's data");
}

TEST(RuntimeSafetensors, EntryErrors) {
  auto one = [](const std::string &entry, size_t dataBytes = 16) {
    return parseST(makeSafetensors("{\"w\":" + entry + "}", std::string(dataBytes, '\0')));
  };
  EXPECT_NO_THROW(one(R"({"dtype":"F32","shape":[2,2],"data_offsets":[0,16]})"));
  EXPECT_ERROR(one(R"({"dtype":"F32","shape":[2,2],"data_offsets":[0,17]})"),
               "tensor 'w': \"data_offsets\" [0, 17] run past the end of the data buffer (16 bytes");
  EXPECT_ERROR(one(R"({"dtype":"F32","shape":[2,2],"data_offsets":[0,12]})", 12),
               "tensor 'w': \"data_offsets\" [0, 12] span 12 bytes, but F32[2, 2] needs 16");
  EXPECT_ERROR(one(R"({"dtype":"F32","shape":[2,2],"data_offsets":[16,0]})"), "end before they begin");
  EXPECT_ERROR(one(R"({"dtype":"F32","shape":[2,2],"data_offsets":[0]})"),
               "\"data_offsets\" must be an array of two integers [begin, end], found an array of 1");
  EXPECT_ERROR(one(R"({"dtype":"F32","shape":[2,2],"data_offsets":[-1,15]})"), "begin must be a non-negative");
  EXPECT_ERROR(one(R"({"dtype":"F32","shape":[2,2],"data_offsets":[0,1e1]})"), "end must be a non-negative");
  EXPECT_ERROR(one(R"({"dtype":"F32","shape":[2,-2],"data_offsets":[0,16]})"),
               "\"shape\" entries must be non-negative integers, found '-2'");
  EXPECT_ERROR(one(R"({"dtype":"F32","shape":[2,2.0],"data_offsets":[0,16]})"), "found '2.0'");
  EXPECT_ERROR(one(R"({"dtype":"F32","shape":[2,"2"],"data_offsets":[0,16]})"), "found a string");
  EXPECT_ERROR(one(R"({"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,16]})"),
               "non-negative integers, found '99999999999999999999'");
  EXPECT_ERROR(one(R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]})"),
               "has too many elements");
  EXPECT_ERROR(one(R"({"dtype":"F32","shape":[2305843009213693952],"data_offsets":[0,16]})"),
               "span 16 bytes, but F32[2305843009213693952] needs 9223372036854775808");
  EXPECT_ERROR(one(R"({"dtype":"F64","shape":[2305843009213693952,2],"data_offsets":[0,16]})"),
               "has too many elements");
  EXPECT_ERROR(one(R"({"dtype":"F32","shape":2,"data_offsets":[0,16]})"), "\"shape\" must be an array");
  EXPECT_ERROR(one(R"({"dtype":"BF16","shape":[8],"data_offsets":[0,16]})"),
               "tensor 'w': unsupported dtype 'BF16' (gradc reads F32, F64, I32 and I64)");
  for (const char *t : {"BOOL", "U8", "I8", "I16", "F16"})
    EXPECT_ERROR(one(std::string("{\"dtype\":\"") + t + "\",\"shape\":[1],\"data_offsets\":[0,16]}"),
                 std::string("unsupported dtype '") + t + "'");
  EXPECT_ERROR(one(R"({"dtype":"F128","shape":[1],"data_offsets":[0,16]})"), "unknown dtype 'F128'");
  EXPECT_ERROR(one(R"({"dtype":32,"shape":[1],"data_offsets":[0,16]})"), "\"dtype\" must be a string");
  EXPECT_ERROR(one(R"({"shape":[4],"data_offsets":[0,16]})"), "tensor 'w': missing \"dtype\"");
  EXPECT_ERROR(one(R"({"dtype":"F32","data_offsets":[0,16]})"), "missing \"shape\"");
  EXPECT_ERROR(one(R"({"dtype":"F32","shape":[4]})"), "missing \"data_offsets\"");
  EXPECT_ERROR(one(R"({"dtype":"F32","shape":[4],"data_offsets":[0,16],"extra":1})"), "unexpected key 'extra'");
  EXPECT_ERROR(one(R"({"dtype":"F32","dtype":"F32","shape":[4],"data_offsets":[0,16]})"), "duplicate key 'dtype'");
  EXPECT_ERROR(one(R"([1])"), "tensor 'w': expected an object with");
  // The byte offset points at the offending value.
  EXPECT_ERROR(one(R"({"dtype":"F32","shape":[4],"data_offsets":[0,12]})", 12),
               "t.safetensors: byte 55: tensor 'w'");
}

TEST(RuntimeSafetensors, LayoutErrors) {
  const std::string d16(16, '\0');
  EXPECT_ERROR(parseST(makeSafetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                       R"("a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                                       d16)),
               "duplicate tensor name 'a'");
  EXPECT_ERROR(parseST(makeSafetensors(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},)"
                                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                                       d16)),
               "tensor 'b' (data bytes [8, 16]) overlaps tensor 'a' (data bytes [0, 12])");
  EXPECT_ERROR(parseST(makeSafetensors(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                                       d16)),
               "data bytes [4, 8] belong to no tensor");
  // Tensors listed out of order in the header are fine.
  EXPECT_EQ(parseST(makeSafetensors(R"({"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},)"
                                    R"("a":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}})",
                                    d16))
                .size(),
            2u);
  SafetensorsMetadata meta;
  parseST(makeSafetensors(R"({"__metadata__":{"x":"1"}})", ""), &meta);
  EXPECT_EQ(meta.at("x"), "1");
  EXPECT_ERROR(parseST(makeSafetensors(R"({"__metadata__":{"x":1}})", "")),
               "\"__metadata__\" value for key 'x' must be a string, found a number");
  EXPECT_ERROR(parseST(makeSafetensors(R"({"__metadata__":[]})", "")), "\"__metadata__\" must be an object");
  EXPECT_ERROR(parseST(makeSafetensors(R"({"__metadata__":{},"__metadata__":{}})", "")), "duplicate \"__metadata__\"");
}

TEST(RuntimeSafetensors, FileErrors) {
  TempDir tmp;
  EXPECT_ERROR(readSafetensors(tmp.file("missing.safetensors")), "missing.safetensors: cannot open: No such file");
  EXPECT_ERROR(readSafetensors(tmp.file("")), "is a directory");
  writeBytes(tmp.file("big"), std::string(100, 'x'));
  EXPECT_ERROR(readFileBytes(tmp.file("big"), 50), "big: file has 100 bytes, more than the limit of 50");
}

// ================================================================================== windows

TEST(RuntimeWindows, SlidingWindowsAndScaling) {
  std::string text = "date,value\n";
  for (int i = 0; i < 10; ++i) text += "2020-01-" + std::to_string(i + 1) + "," + std::to_string(i * i) + "\n";
  std::vector<int64_t> lines;
  std::vector<double> v = csv(text, "value", &lines);
  ASSERT_EQ(v.size(), 10u);
  EXPECT_EQ(lines.front(), 2);
  EXPECT_EQ(lines.back(), 11);
  Dataset d = makeWindows(v, 3, 1, 0.8, "minmax", "data.csv", &lines);
  // N = 10 - 3 - 1 + 1 = 7; s = 8: training targets have index < 8, i.e. windows 0..4.
  EXPECT_EQ(d.n, 7);
  EXPECT_EQ(d.trainCount, 5);
  EXPECT_TRUE(d.hasValidation());
  EXPECT_EQ(d.x.shape, (std::vector<int64_t>{7, 3, 1}));
  EXPECT_EQ(d.y.shape, (std::vector<int64_t>{7, 1}));
  EXPECT_EQ(d.x.dtype, DType::F32);
  EXPECT_EQ(d.scaling.target.offset, 0.0);
  EXPECT_EQ(d.scaling.target.scale, 49.0); // max of v[0..8) = 7^2
  for (int64_t i = 0; i < 7; ++i) {
    for (int64_t k = 0; k < 3; ++k) EXPECT_FLOAT_EQ(d.x.f32()[i * 3 + k], float((i + k) * (i + k)) / 49.0f);
    EXPECT_FLOAT_EQ(d.y.f32()[i], float((i + 3) * (i + 3)) / 49.0f);
  }
  EXPECT_NEAR(d.unscale(d.y.f32()[6]), 81.0, 1e-5);

  Dataset h = makeWindows(v, 2, 3, 1.0, "none", "data.csv");
  EXPECT_EQ(h.n, 10 - 2 - 3 + 1);
  EXPECT_EQ(h.trainCount, h.n);
  EXPECT_FALSE(h.hasValidation());
  EXPECT_EQ(h.y.f32()[0], 16.0f); // v[0 + 2 + 3 - 1]

  Dataset s = makeWindows(v, 2, 1, 0.5, "standard", "data.csv");
  // fitted on v[0..5) = 0 1 4 9 16: mean 6, population std sqrt(174 / 5)
  EXPECT_DOUBLE_EQ(s.scaling.target.offset, 6.0);
  EXPECT_NEAR(s.scaling.target.scale, std::sqrt(34.8), 1e-12);
  EXPECT_EQ(s.trainCount, 5 - 2 - 1 + 1);

  // A constant training part: scale 1 (shift only).
  Dataset c = makeWindows({5, 5, 5, 5, 6}, 2, 1, 0.8, "minmax", "c.csv");
  EXPECT_EQ(c.scaling.target.scale, 1.0);
  EXPECT_EQ(c.y.f32()[c.n - 1], 1.0f);
}

TEST(RuntimeWindows, CsvQuotingAndLineEnds) {
  // Quoted fields with commas, doubled quotes and a newline; CRLF; BOM; trailing empty lines.
  std::string text = "\xEF\xBB\xBF\"the date\",\"value\"\r\n"
                     "\"Jan 1, 2020\",\"1.5\"\r\n"
                     "\"say \"\"hi\"\"\",  -2e1 \r\n"
                     "\"two\nlines\",+3\r\n"
                     "x,4\r\n\r\n\n";
  std::vector<int64_t> lines;
  std::vector<double> v = csv(text, "value", &lines);
  EXPECT_EQ(v, (std::vector<double>{1.5, -20, 3, 4}));
  EXPECT_EQ(lines, (std::vector<int64_t>{2, 3, 4, 6}));
  EXPECT_ERROR(csv(text, "the date"), "data.csv:2: column 'the date': expected a number, found 'Jan 1, 2020'");
  // Error after the multi-line field reports the physical line.
  EXPECT_ERROR(csv("value\n\"a\nb\"\n"), "data.csv:2: column 'value': expected a number, found 'a\\x0ab'");
  EXPECT_ERROR(csv("v,value\n\"a\nb\",1\nq,z\n"), "data.csv:4: column 'value': expected a number, found 'z'");
  // Column names match after trimming spaces.
  EXPECT_EQ(csv("date, value \n1,2\n"), std::vector<double>{2});
  // No trailing newline.
  EXPECT_EQ(csv("value\n1\n2"), (std::vector<double>{1, 2}));
}

TEST(RuntimeWindows, CsvErrors) {
  EXPECT_ERROR(csv("date,value\n1,2\n2,abc\n"), "data.csv:3: column 'value': expected a number, found 'abc'");
  EXPECT_ERROR(csv("date,value\n1,2\n2,\n"), "data.csv:3: column 'value': expected a number, found an empty cell");
  EXPECT_ERROR(csv("date,value\n1,nan\n"), "data.csv:2: column 'value': expected a finite number, found 'nan'");
  EXPECT_ERROR(csv("date,value\n1,-inf\n"), "expected a finite number, found '-inf'");
  EXPECT_ERROR(csv("date,value\n1,1e999\n"), "data.csv:2: column 'value': expected a number, found '1e999' (out of");
  EXPECT_ERROR(csv("date,value\n1,0x10\n"), "found '0x10'");
  EXPECT_ERROR(csv("date,value\n1,1.5.2\n"), "found '1.5.2'");
  EXPECT_ERROR(csv("date,value\n1,++1\n"), "found '++1'");
  EXPECT_ERROR(csv("date,price\n1,2\n"), "data.csv:1: no column 'value' in the header; the columns are 'date', 'price'");
  EXPECT_ERROR(csv("date,temp\xC3\xA9rature\x01\n1,2\n"), "the columns are 'date', 'temp\xC3\xA9rature\\x01'");
  EXPECT_EQ(csv("value\n1E5\n-.5\n5.\n 7 \n\"8\"\n"), (std::vector<double>{1e5, -0.5, 5, 7, 8}));
  EXPECT_ERROR(csv("date,value,x\n1,2,3\n4,5\n"), "data.csv:3: expected 3 fields as in the header, found 2");
  EXPECT_ERROR(csv("date,value\n1,2,3\n"), "data.csv:2: expected 2 fields as in the header, found 3");
  EXPECT_ERROR(csv("value,value\n1,2\n"), "data.csv:1: column 'value' appears more than once in the header");
  EXPECT_ERROR(csv(""), "data.csv:1: expected a header row naming the columns, found an empty file");
  EXPECT_ERROR(csv("\nvalue\n1\n"), "data.csv:1: expected a header row naming the columns, found an empty line");
  EXPECT_ERROR(csv("value\n1\n\n2\n"), "data.csv:3: empty line before the end of the data");
  EXPECT_ERROR(csv("a,value\n\"open,1\n2,3\n"), "data.csv:2: quoted field is not closed");
  EXPECT_ERROR(csv("a,value\n\"x\"y,1\n"), "data.csv:2: expected ',' or the end of the line after the closing");
  EXPECT_ERROR(csv("a,value\nx\"y,1\n"), "data.csv:2: unexpected '\"' inside an unquoted field");
}

TEST(RuntimeWindows, WindowErrors) {
  std::vector<double> v20(20, 1.0);
  EXPECT_ERROR(makeWindows(v20, 30, 1, 0.8, "minmax", "data/series.csv"),
               "data/series.csv: the series has 20 values, too few for windows of length 30 and horizon 1");
  EXPECT_ERROR(makeWindows(v20, 19, 2, 0.8, "minmax", "s.csv"), "the series has 20 values, too few");
  EXPECT_NO_THROW(makeWindows(v20, 19, 1, 1.0, "minmax", "s.csv"));
  EXPECT_ERROR(makeWindows(v20, 16, 1, 0.8, "minmax", "s.csv"),
               "s.csv: the training split (the first 16 of 20 values, split 0.8) is too short");
  EXPECT_ERROR(makeWindows(v20, 0, 1, 0.8, "minmax", "s.csv"), "s.csv: windows: length must be at least 1, found 0");
  EXPECT_ERROR(makeWindows(v20, 2, 0, 0.8, "minmax", "s.csv"), "horizon must be at least 1");
  EXPECT_ERROR(makeWindows(v20, 2, 1, 0.0, "minmax", "s.csv"), "split must be in (0, 1], found 0");
  EXPECT_ERROR(makeWindows(v20, 2, 1, NAN, "minmax", "s.csv"), "split must be in (0, 1]");
  EXPECT_ERROR(makeWindows(v20, 2, 1, 1.5, "minmax", "s.csv"), "split must be in (0, 1], found 1.5");
  EXPECT_ERROR(makeWindows(v20, 2, 1, 0.8, "robust", "s.csv"), "unknown scale 'robust'");
  EXPECT_ERROR(makeWindows(v20, INT64_MAX, INT64_MAX, 0.8, "none", "s.csv"), "too few");
  std::vector<double> wide = {-1e308, 1e308, 0, 0, 0, 0};
  EXPECT_ERROR(makeWindows(wide, 1, 1, 0.5, "minmax", "s.csv"), "too wide a range");
  std::vector<double> big = {0, 1, 0, 1, 1e300};
  std::vector<int64_t> lines = {2, 3, 4, 5, 9};
  EXPECT_ERROR(makeWindows(big, 1, 1, 0.8, "minmax", "s.csv", &lines),
               "s.csv: line 9: column 'value': value 1e+300 is outside the float32 range after scaling");
}

TEST(RuntimeWindows, LoadFromFile) {
  TempDir tmp;
  std::string text = "t,value\n";
  for (int i = 0; i < 40; ++i) text += std::to_string(i) + "," + std::to_string(std::sin(i * 0.3)) + "\n";
  writeBytes(tmp.file("series.csv"), text);
  Dataset d = loadWindows(tmp.file("series.csv"), "value", 30, 1);
  EXPECT_EQ(d.n, 10);
  EXPECT_EQ(d.trainCount, 32 - 30); // targets 30, 31 < s = 32
  EXPECT_ERROR(loadWindows(tmp.file("series.csv"), "value", 33, 1),
               "the training split (the first 32 of 40 values, split 0.8) is too short for one of the windows of "
               "length 33 and horizon 1");
  EXPECT_ERROR(loadWindows(tmp.file("nope.csv"), "value", 3, 1), "nope.csv: cannot open");
  writeBytes(tmp.file("bad.csv"), "t,value\n1,2\n2,x\n");
  std::string msg = errorOf([&] { loadWindows(tmp.file("bad.csv"), "value", 1, 1); });
  EXPECT_EQ(msg, tmp.file("bad.csv") + ":3: column 'value': expected a number, found 'x'");
}

// ====================================================================================== IDX

TEST(RuntimeIdx, RawAndGzip) {
  const std::string images = idxImages(3, 2, 4), labels = idxLabels({7, 0, 9});
  for (int mode = 0; mode < 4; ++mode) {
    std::string im = (mode & 1) ? gzipBytes(images) : images;
    std::string lb = (mode & 2) ? gzipBytes(labels) : labels;
    Dataset d = parseIdxStrings(im, lb);
    EXPECT_EQ(d.n, 3);
    EXPECT_EQ(d.trainCount, 3);
    EXPECT_EQ(d.x.dtype, DType::F32);
    EXPECT_EQ(d.x.shape, (std::vector<int64_t>{3, 2, 4}));
    EXPECT_EQ(d.y.dtype, DType::I32);
    EXPECT_EQ(d.y.shape, (std::vector<int64_t>{3}));
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 8; ++j) EXPECT_EQ(d.x.f32()[i * 8 + j], float((i * 7 + j) % 256) / 255.0f);
    EXPECT_EQ(d.y.i32()[0], 7);
    EXPECT_EQ(d.y.i32()[2], 9);
  }
  // Multi-member gzip (as `cat a.gz b.gz` produces) is one stream.
  std::string split = gzipBytes(images.substr(0, 10)) + gzipBytes(images.substr(10));
  EXPECT_EQ(parseIdxStrings(split, labels).n, 3);

  TempDir tmp;
  writeBytes(tmp.file("img.gz"), gzipBytes(images));
  writeBytes(tmp.file("lab"), labels);
  EXPECT_EQ(loadIdx(tmp.file("img.gz"), tmp.file("lab")).n, 3);
  EXPECT_ERROR(loadIdx(tmp.file("img.gz"), tmp.file("none")), "none: cannot open");
}

TEST(RuntimeIdx, Truncation) {
  const std::string images = idxImages(2, 3, 3), labels = idxLabels({1, 2});
  for (size_t len = 0; len < images.size(); ++len) {
    std::string msg = errorOf([&] { parseIdxStrings(images.substr(0, len), labels); });
    EXPECT_EQ(msg.rfind("img.idx: byte ", 0), 0u) << len << ": " << msg;
  }
  for (size_t len = 0; len < labels.size(); ++len) {
    std::string msg = errorOf([&] { parseIdxStrings(images, labels.substr(0, len)); });
    EXPECT_EQ(msg.rfind("lab.idx: byte ", 0), 0u) << len << ": " << msg;
  }
  const std::string gz = gzipBytes(images);
  for (size_t len = 2; len < gz.size(); ++len) {
    std::string msg = errorOf([&] { parseIdxStrings(gz.substr(0, len), labels); });
    EXPECT_EQ(msg.rfind("img.idx: byte ", 0), 0u) << len << ": " << msg;
  }
  EXPECT_ERROR(parseIdxStrings(images.substr(0, 20), labels),
               "img.idx: byte 20: expected 18 bytes of pixels for 2 images of 3x3, found 4 (file truncated?)");
  EXPECT_ERROR(parseIdxStrings(gzipBytes(images.substr(0, 20)), labels),
               "img.idx: byte 20 of the decompressed data: expected 18 bytes of pixels");
  EXPECT_ERROR(parseIdxStrings(gz.substr(0, gz.size() - 3), labels), "gzip data is truncated");
  EXPECT_ERROR(parseIdxStrings(images + "x", labels), "img.idx: byte 34: unexpected data after the last image");
  EXPECT_ERROR(parseIdxStrings(images, labels + "x"), "lab.idx: byte 10: unexpected data after the last label");
}

TEST(RuntimeIdx, FormatErrors) {
  const std::string images = idxImages(2, 3, 3), labels = idxLabels({1, 2});
  EXPECT_ERROR(parseIdxStrings(labels, images),
               "img.idx: byte 3: expected an IDX image file starting with the magic number 0x00000803 (unsigned "
               "bytes, 3 dimensions), found 0x00000801 (a label file? check the order of images and labels)");
  EXPECT_ERROR(parseIdxStrings(images, images), "lab.idx: byte 3: expected an IDX label file");
  std::string wrongType = images;
  wrongType[2] = 0x0D;
  EXPECT_ERROR(parseIdxStrings(wrongType, labels), "element type 0x0d is not unsigned bytes");
  EXPECT_ERROR(parseIdxStrings("PK\x03\x04 not idx at all", labels), "byte 0: expected an IDX image file");
  EXPECT_ERROR(parseIdxStrings(images, idxLabels({1, 10})),
               "lab.idx: byte 9: label 10 of sample 1 is out of range (expected 0 to 9 for 10 classes)");
  EXPECT_EQ(parseIdxStrings(images, idxLabels({1, 10}), 11).n, 2);
  EXPECT_ERROR(parseIdxStrings(images, idxLabels({1, 2}), 0), "the number of classes must be at least 1");
  EXPECT_ERROR(parseIdxStrings(images, idxLabels({1, 2, 3})),
               "img.idx has 2 images but lab.idx has 3 labels (expected one label per image)");
  EXPECT_ERROR(parseIdxStrings(idxImages(0, 3, 3), idxLabels({})), "img.idx: byte 4: the file contains no images");
  EXPECT_ERROR(parseIdxStrings(idxImages(2, 0, 3), labels), "byte 8: the images have 0 rows");
  // Huge dimensions: no overflow, no allocation, a clear error.
  std::string huge = be32(0x803) + be32(0xffffffff) + be32(0xffffffff) + be32(0xffffffff) + "abc";
  EXPECT_ERROR(parseIdxStrings(huge, labels), "expected more than 2^64 bytes of pixels");
  std::string big = be32(0x803) + be32(60000) + be32(28) + be32(28) + "abc";
  EXPECT_ERROR(parseIdxStrings(big, labels),
               "img.idx: byte 19: expected 47040000 bytes of pixels for 60000 images of 28x28, found 3");
  std::string bigLabels = be32(0x801) + be32(0xffffffff);
  EXPECT_ERROR(parseIdxStrings(images, bigLabels), "expected 4294967295 bytes of labels, found 0");
}

TEST(RuntimeIdx, GzipErrors) {
  const std::string images = idxImages(2, 3, 3), labels = idxLabels({1, 2});
  std::string gz = gzipBytes(images);
  EXPECT_ERROR(parseIdxStrings(gz + "junk", labels), "unexpected data after the end of the gzip stream");
  std::string corrupt = gz;
  corrupt[12] = static_cast<char>(corrupt[12] ^ 0x5a);
  corrupt[13] = static_cast<char>(corrupt[13] ^ 0xa5);
  std::string msg = errorOf([&] { parseIdxStrings(corrupt, labels); });
  EXPECT_EQ(msg.rfind("img.idx: byte ", 0), 0u) << msg;
  // Decompression bomb: 4 MiB of zeros in a few KB, limited to 1 MiB.
  std::string zeros = gzipBytes(std::string(4 << 20, '\0'));
  EXPECT_LT(zeros.size(), 10000u);
  EXPECT_ERROR(gunzip(reinterpret_cast<const unsigned char *>(zeros.data()), zeros.size(), "bomb.gz", 1 << 20),
               "bomb.gz: byte 0: decompresses to more than 1048576 bytes (the limit)");
  EXPECT_EQ(gunzip(reinterpret_cast<const unsigned char *>(zeros.data()), zeros.size(), "ok.gz", 4 << 20).size(),
            size_t(4) << 20);
}

// ================================================================================== tensors

TEST(RuntimeTensors, LoadNamedTensors) {
  TempDir tmp;
  HostTensor x(DType::F32, {4, 3, 1}), y(DType::F32, {4, 1}), z(DType::I32, {5});
  writeSafetensors(tmp.file("d.safetensors"), {{"x", &x}, {"y", &y}, {"z", &z}});
  auto got = loadTensors(tmp.file("d.safetensors"), {"x", "z"});
  EXPECT_EQ(got.size(), 2u);
  EXPECT_EQ(got.at("z").shape, std::vector<int64_t>{5});
  EXPECT_EQ(loadTensors(tmp.file("d.safetensors"), {}).size(), 3u);
  EXPECT_ERROR(loadTensors(tmp.file("d.safetensors"), {"x", "labels"}),
               "d.safetensors: no tensor named 'labels'; the file has 'x', 'y', 'z'");
  Dataset d = loadTensorDataset(tmp.file("d.safetensors"));
  EXPECT_EQ(d.n, 4);
  EXPECT_EQ(d.trainCount, 4);
  EXPECT_ERROR(loadTensorDataset(tmp.file("d.safetensors"), "x", "z"),
               "tensors 'x' F32[4, 3, 1] and 'z' I32[5] have different numbers of samples (4 and 5)");
  EXPECT_NO_THROW(expectTensor("d.safetensors", "x", d.x, DType::F32, {-1, 3, 1}));
  EXPECT_ERROR(expectTensor("d.safetensors", "x", d.x, DType::F32, {-1, 30, 1}),
               "d.safetensors: tensor 'x': expected F32[*, 30, 1], found F32[4, 3, 1]");
  EXPECT_ERROR(expectTensor("d.safetensors", "x", d.x, DType::F64, {4, 3, 1}), "expected F64[4, 3, 1], found F32");

  HostTensor s(DType::F32, {});
  writeSafetensors(tmp.file("s.safetensors"), {{"x", &s}, {"y", &y}});
  EXPECT_ERROR(loadTensorDataset(tmp.file("s.safetensors")), "tensor 'x' is a scalar");
  writeSafetensors(tmp.file("e.safetensors"), {});
  EXPECT_ERROR(loadTensors(tmp.file("e.safetensors"), {"x"}), "no tensor named 'x'; the file has no tensors");
}

TEST(RuntimeTensors, HostTensorBasics) {
  HostTensor t(DType::I64, {2, 0, 3});
  EXPECT_EQ(t.numel(), 0);
  EXPECT_TRUE(t.consistent());
  EXPECT_EQ(std::string(dtypeName(DType::F64)), "F64");
  DType dt;
  EXPECT_TRUE(parseDType("I32", dt));
  EXPECT_EQ(dt, DType::I32);
  EXPECT_FALSE(parseDType("BF16", dt));
  EXPECT_ERROR(HostTensor(DType::F32, {-1}), "invalid tensor shape [-1]");
  EXPECT_ERROR(HostTensor(DType::F64, {int64_t(1) << 40, int64_t(1) << 40}), "invalid tensor shape");
  int64_t n = 0;
  EXPECT_FALSE(checkedNumel({int64_t(1) << 32, int64_t(1) << 32}, n));
  EXPECT_TRUE(checkedNumel({int64_t(1) << 62, 0, int64_t(1) << 62}, n));
  EXPECT_EQ(n, 0);
}
