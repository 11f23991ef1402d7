// DataMeta.cpp: implements the data-source metadata of checkpoints (DataMeta.h): the windows scaling as a JSON string, the text vocabulary as a UTF-8 string, their strict decoding and their fit to the model.
#include "DataMeta.h"

#include <charconv>
#include <cmath>

#include <fmt/format.h>

#include "Json.h"

namespace gradc::rt {

namespace {

/// Shortest round-trip decimal of a finite double.
std::string exactNumber(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

/// {"name": N, "offset": O, "scale": S}.
std::string columnJson(const ColumnScaling &c) {
  return "{\"name\":" + jsonQuote(c.name) + ",\"offset\":" + exactNumber(c.offset) + ",\"scale\":" + exactNumber(c.scale) +
         "}";
}

/// Reports a malformed metadata value.
struct MetaError {
  const std::string &path;
  const char *key;
  [[noreturn]] void fail(const std::string &what) const {
    throw DataError(path + ": metadata '" + key + "': " + what);
  }
};

/// A member of a JSON object that must be there, once.
const JsonValue &member(const JsonValue &o, const char *name, JsonValue::Kind kind, const MetaError &e,
                        const std::string &where) {
  const JsonValue *v = o.find(name);
  if (!v) e.fail(where + " has no \"" + name + "\"");
  int count = 0;
  for (const JsonMember &m : o.members) count += m.key == name;
  if (count > 1) e.fail(where + " has \"" + name + "\" twice");
  if (v->kind != kind) e.fail(where + ": \"" + name + "\" is " + v->kindName());
  return *v;
}

/// One column's scaling object.
ColumnScaling decodeColumn(const JsonValue &o, const MetaError &e, const std::string &where) {
  if (o.kind != JsonValue::Kind::Object) e.fail(where + " is " + o.kindName() + ", expected an object");
  ColumnScaling c;
  c.name = member(o, "name", JsonValue::Kind::String, e, where).text;
  if (!member(o, "offset", JsonValue::Kind::Number, e, where).asDouble(c.offset))
    e.fail(where + ": \"offset\" is not a finite number");
  if (!member(o, "scale", JsonValue::Kind::Number, e, where).asDouble(c.scale) || !(c.scale > 0))
    e.fail(where + ": \"scale\" must be a positive finite number, found " +
           printableForMessage(o.find("scale")->text, 40));
  return c;
}

/// The names of a list of columns for a message: 'a', 'b'.
std::string nameList(const std::vector<std::string> &names) {
  std::string o;
  for (const std::string &n : names) o += (o.empty() ? "'" : ", '") + printableForMessage(n, 60) + "'";
  return o.empty() ? std::string("none") : o;
}

} // namespace

void encodeDataMeta(const DataMeta &d, SafetensorsMetadata &meta) {
  if (d.hasScaling) {
    std::string s = "{\"method\":" + jsonQuote(d.scaling.method) + ",\"columns\":[";
    for (size_t i = 0; i < d.scaling.inputs.size(); ++i) s += (i ? "," : "") + columnJson(d.scaling.inputs[i]);
    s += "],\"target\":" + columnJson(d.scaling.target) + "}";
    meta[kScalingKey] = s;
  }
  if (d.hasVocabulary) {
    std::string v;
    for (uint32_t cp : d.vocabulary) appendUtf8(v, cp);
    meta[kVocabularyKey] = v;
  }
}

DataMeta decodeDataMeta(const SafetensorsMetadata &meta, const std::string &path) {
  DataMeta d;
  if (auto it = meta.find(kScalingKey); it != meta.end()) {
    const MetaError e{path, kScalingKey};
    JsonValue root;
    try {
      root = parseJson(it->second, 0, 8, 100000);
    } catch (const JsonError &j) {
      e.fail(std::string("not valid JSON: ") + j.what());
    }
    if (root.kind != JsonValue::Kind::Object) e.fail(std::string("expected a JSON object, found ") + root.kindName());
    for (const JsonMember &m : root.members)
      if (m.key != "method" && m.key != "columns" && m.key != "target")
        e.fail("unknown field \"" + printableForMessage(m.key, 40) + "\"");
    d.scaling.method = member(root, "method", JsonValue::Kind::String, e, "the scaling").text;
    if (d.scaling.method != "minmax" && d.scaling.method != "standard" && d.scaling.method != "none")
      e.fail("\"method\" is '" + printableForMessage(d.scaling.method, 40) +
             "', expected \"minmax\", \"standard\" or \"none\"");
    const JsonValue &cols = member(root, "columns", JsonValue::Kind::Array, e, "the scaling");
    if (cols.items.empty()) e.fail("\"columns\" is empty");
    for (size_t i = 0; i < cols.items.size(); ++i)
      d.scaling.inputs.push_back(decodeColumn(cols.items[i], e, "column " + std::to_string(i + 1)));
    d.scaling.target = decodeColumn(member(root, "target", JsonValue::Kind::Object, e, "the scaling"), e, "the target");
    d.hasScaling = true;
  }
  if (auto it = meta.find(kVocabularyKey); it != meta.end()) {
    const MetaError e{path, kVocabularyKey};
    const std::string &v = it->second;
    if (v.empty()) e.fail("the vocabulary is empty");
    try {
      d.vocabulary = decodeUtf8(reinterpret_cast<const unsigned char *>(v.data()), v.size(), "the vocabulary");
    } catch (const DataError &u) {
      e.fail(u.what());
    }
    // A leading U+FEFF is skipped by decodeUtf8 as a byte order mark; here it is a character.
    if (v.size() >= 3 && v.compare(0, 3, "\xEF\xBB\xBF") == 0) d.vocabulary.insert(d.vocabulary.begin(), 0xFEFF);
    for (size_t i = 1; i < d.vocabulary.size(); ++i)
      if (d.vocabulary[i] <= d.vocabulary[i - 1])
        e.fail(fmt::format("character {} (U+{:04X}) does not follow U+{:04X} in increasing order (the vocabulary is "
                           "sorted and has no repeats)",
                           i + 1, d.vocabulary[i], d.vocabulary[i - 1]));
    if (d.vocabulary.size() > (uint64_t(1) << 31)) e.fail("the vocabulary is too large");
    d.hasVocabulary = true;
  }
  return d;
}

void checkScalingFits(const WindowsScaling &s, const WindowsOptions &o, const std::string &path) {
  const MetaError e{path, kScalingKey};
  if (s.method != o.scale)
    e.fail("the checkpoint's scaling is \"" + s.method + "\", but the model's windows source has scale = \"" + o.scale + "\"");
  std::vector<std::string> have;
  for (const ColumnScaling &c : s.inputs) have.push_back(c.name);
  if (have != o.columns)
    e.fail("the checkpoint scaled the input columns " + nameList(have) + ", but the model reads " + nameList(o.columns));
  if (s.target.name != o.target)
    e.fail("the checkpoint's target column is " + nameList({s.target.name}) + ", but the model's is " + nameList({o.target}));
}

void checkVocabularyFits(size_t size, const ModelSpec &spec, const std::string &what) {
  for (const TensorSpec &t : spec.outputs)
    if (t.shape.size() == 3 && size > static_cast<size_t>(t.shape[2]))
      throw DataError(what + ": the vocabulary has " + std::to_string(size) + " characters, more than the " +
                      std::to_string(t.shape[2]) + " classes of the model's output '" + t.name + "' " +
                      shapeString(t.shape));
}

} // namespace gradc::rt
