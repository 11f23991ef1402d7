// DataMetaTest.cpp: unit tests of the multi-column windows, the text reader and the checkpoint metadata of their scaling and vocabulary (DataSources.h, DataMeta.h).
#include <gtest/gtest.h>

#include "DataMeta.h"
#include "DataSources.h"

using namespace gradc::rt;

namespace {

/// The message of the DataError `f` throws ("" if none).
template <class F> std::string errorOf(F f) {
  try {
    f();
  } catch (const DataError &e) {
    return e.what();
  }
  return "";
}

} // namespace

TEST(MultiWindows, EachColumnHasItsOwnScaling) {
  const std::string csv = "t,a,b\n0,1,10\n1,2,30\n2,3,20\n3,4,50\n4,5,40\n";
  std::vector<int64_t> lines;
  auto cols = parseCsvColumns(csv, {"a", "b"}, "m.csv", &lines);
  ASSERT_EQ(cols.size(), 2u);
  EXPECT_EQ(cols[1], (std::vector<double>{10, 30, 20, 50, 40}));
  EXPECT_EQ(lines, (std::vector<int64_t>{2, 3, 4, 5, 6}));
  WindowsOptions o;
  o.columns = {"a", "b"};
  o.target = "b";
  o.length = 2;
  o.split = 0.8; // s = 4 rows: a in [1, 4], b in [10, 50]
  Dataset d = makeMultiWindows(cols, cols[1], o, "m.csv", &lines);
  ASSERT_EQ(d.x.shape, (std::vector<int64_t>{3, 2, 2}));
  EXPECT_EQ(d.trainCount, 2);
  EXPECT_EQ(d.scaling.inputs[0].offset, 1);
  EXPECT_EQ(d.scaling.inputs[0].scale, 3);
  EXPECT_EQ(d.scaling.inputs[1].offset, 10);
  EXPECT_EQ(d.scaling.inputs[1].scale, 40);
  EXPECT_EQ(d.scaling.target.name, "b");
  // x[1] = rows 1, 2: a = 2, 3 and b = 30, 20, scaled; y[1] = b of row 3 = 50.
  const float *x = d.x.f32();
  EXPECT_FLOAT_EQ(x[4], 1.0f / 3);
  EXPECT_FLOAT_EQ(x[5], 0.5f);
  EXPECT_FLOAT_EQ(x[6], 2.0f / 3);
  EXPECT_FLOAT_EQ(x[7], 0.25f);
  EXPECT_FLOAT_EQ(d.y.f32()[1], 1.0f);
  EXPECT_DOUBLE_EQ(d.unscale(1.0), 50.0);
  // A fixed scaling is used as it is.
  WindowsScaling fixed = d.scaling;
  fixed.inputs[0].offset = 0;
  fixed.inputs[0].scale = 10;
  Dataset e = makeMultiWindows(cols, cols[1], o, "m.csv", &lines, &fixed);
  EXPECT_FLOAT_EQ(e.x.f32()[4], 0.2f);
}

TEST(MultiWindows, ErrorsNameTheColumnAndLine) {
  EXPECT_NE(errorOf([] { parseCsvColumns("a,b\n1,x\n", {"a", "b"}, "m.csv"); }).find("m.csv:2: column 'b': expected a number"),
            std::string::npos);
  EXPECT_NE(errorOf([] { parseCsvColumns("a,b\n1,2\n", {"a", "c"}, "m.csv"); }).find("m.csv:1: no column 'c'"),
            std::string::npos);
}

TEST(Text, VocabularyAndShiftedWindows) {
  const std::string s = "ab\xC3\xA9" "ba\xC3\xA9" "a"; // a b é b a é a: 7 characters
  Dataset d = parseText(reinterpret_cast<const unsigned char *>(s.data()), s.size(), 3, 1.0, "t.txt");
  EXPECT_EQ(d.vocabulary, (std::vector<uint32_t>{'a', 'b', 0xE9}));
  ASSERT_EQ(d.x.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(std::vector<int32_t>(d.x.i32(), d.x.i32() + 6), (std::vector<int32_t>{0, 1, 2, 1, 0, 2}));
  EXPECT_EQ(std::vector<int32_t>(d.y.i32(), d.y.i32() + 6), (std::vector<int32_t>{1, 2, 1, 0, 2, 0}));
  EXPECT_EQ(d.trainCount, 2);
}

TEST(Text, MalformedUtf8NamesTheByte) {
  const std::string s = "abc\xE2\x28\xA1";
  EXPECT_EQ(errorOf([&] { decodeUtf8(reinterpret_cast<const unsigned char *>(s.data()), s.size(), "t.txt"); }),
            "t.txt: byte 4: malformed UTF-8: expected a continuation byte (0x80 to 0xbf) of the sequence starting at "
            "byte 3, found 0x28");
}

TEST(DataMetaRoundTrip, ScalingAndVocabularyExact) {
  DataMeta d;
  d.hasScaling = true;
  d.scaling.method = "standard";
  d.scaling.inputs = {{"x \"quoted\"", 0.1, 3.0000000000000004}, {"y", -1e300, 1e-300}};
  d.scaling.target = {"y", -1e300, 1e-300};
  d.hasVocabulary = true;
  d.vocabulary = {0, '\n', 'a', 0xE9, 0x1F600};
  SafetensorsMetadata m;
  encodeDataMeta(d, m);
  DataMeta e = decodeDataMeta(m, "ck.safetensors");
  ASSERT_TRUE(e.hasScaling && e.hasVocabulary);
  EXPECT_EQ(e.scaling.method, "standard");
  ASSERT_EQ(e.scaling.inputs.size(), 2u);
  EXPECT_EQ(e.scaling.inputs[0].name, "x \"quoted\"");
  EXPECT_EQ(e.scaling.inputs[0].scale, 3.0000000000000004);
  EXPECT_EQ(e.scaling.inputs[1].offset, -1e300);
  EXPECT_EQ(e.scaling.target.scale, 1e-300);
  EXPECT_EQ(e.vocabulary, d.vocabulary);
}

TEST(DataMetaRoundTrip, MalformedValuesNameFileAndKey) {
  EXPECT_EQ(errorOf([] { decodeDataMeta({{kScalingKey, "[]"}}, "ck.safetensors"); }),
            "ck.safetensors: metadata 'gradc.scaling': expected a JSON object, found an array");
  EXPECT_NE(errorOf([] {
              decodeDataMeta({{kScalingKey, R"({"method":"minmax","columns":[{"name":"a","offset":0,"scale":-1}],)"
                                            R"("target":{"name":"a","offset":0,"scale":1}})"}},
                             "ck.safetensors");
            }).find("column 1: \"scale\" must be a positive finite number"),
            std::string::npos);
  EXPECT_EQ(errorOf([] { decodeDataMeta({{kVocabularyKey, "ba"}}, "ck.safetensors"); }),
            "ck.safetensors: metadata 'gradc.vocabulary': character 2 (U+0061) does not follow U+0062 in increasing "
            "order (the vocabulary is sorted and has no repeats)");
}
