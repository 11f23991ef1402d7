// Json.cpp: implements the strict JSON parser, UTF-8 validation and JSON string quoting declared in Json.h.
#include "Json.h"

#include <charconv>
#include <cmath>
#include <limits>

namespace gradc::rt {

JsonError::JsonError(size_t off, std::string det)
    : DataError(det + " at byte " + std::to_string(off)), offset(off), detail(std::move(det)) {}

const JsonValue *JsonValue::find(std::string_view key) const {
  if (kind != Kind::Object) return nullptr;
  for (const auto &m : members)
    if (m.key == key) return &m.value;
  return nullptr;
}

bool JsonValue::asInt64(int64_t &out) const {
  if (kind != Kind::Number) return false;
  for (char c : text)
    if (c == '.' || c == 'e' || c == 'E') return false;
  const char *b = text.data(), *e = text.data() + text.size();
  auto r = std::from_chars(b, e, out);
  return r.ec == std::errc() && r.ptr == e;
}

bool JsonValue::asDouble(double &out) const {
  if (kind != Kind::Number) return false;
  const char *b = text.data(), *e = text.data() + text.size();
  auto r = std::from_chars(b, e, out);
  return r.ec == std::errc() && r.ptr == e && std::isfinite(out);
}

const char *JsonValue::kindName() const {
  switch (kind) {
  case Kind::Null: return "null";
  case Kind::Bool: return "a boolean";
  case Kind::Number: return "a number";
  case Kind::String: return "a string";
  case Kind::Array: return "an array";
  case Kind::Object: return "an object";
  }
  return "a value";
}

namespace {
/// Length of the valid UTF-8 sequence at s[i], or 0 (defined below).
size_t utf8SequenceLength(std::string_view s, size_t i);
} // namespace

std::string printableForMessage(std::string_view s, size_t maxLen) {
  static const char *hex = "0123456789abcdef";
  std::string out;
  size_t i = 0;
  for (; i < s.size() && i < maxLen;) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    size_t len = c >= 0x80 ? utf8SequenceLength(s, i) : 0;
    if (len > 1) { // valid UTF-8 (non-ASCII text) is kept as it is
      out.append(s.data() + i, len);
      i += len;
      continue;
    }
    out += "\\x";
    out += hex[c >> 4];
    out += hex[c & 15];
    ++i;
  }
  if (i < s.size()) out += "...";
  return out;
}

namespace {

/// Decodes one UTF-8 sequence at s[i]; returns its length, or 0 if it is malformed.
size_t utf8SequenceLength(std::string_view s, size_t i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return 1;
  size_t len;
  uint32_t cp;
  if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; }
  else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; }
  else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; }
  else return 0;
  if (s.size() - i < len) return 0;
  for (size_t k = 1; k < len; ++k) {
    unsigned char d = static_cast<unsigned char>(s[i + k]);
    if ((d & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (d & 0x3f);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) return 0; // overlong
  if (cp >= 0xd800 && cp <= 0xdfff) return 0;                          // surrogate
  if (cp > 0x10ffff) return 0;
  return len;
}

/// Appends code point `cp` encoded as UTF-8.
void appendUtf8(std::string &out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

/// Recursive-descent parser over one JSON text; throws JsonError.
class Parser {
public:
  Parser(std::string_view text, size_t base, int maxDepth, size_t maxValues)
      : s_(text), base_(base), maxDepth_(maxDepth), maxValues_(maxValues) {}

  /// Parses the whole text as one value surrounded by optional whitespace.
  JsonValue parseDocument() {
    skipWs();
    JsonValue v = parseValue(0);
    skipWs();
    if (pos_ != s_.size()) fail("expected the end of the JSON text after the value");
    return v;
  }

private:
  std::string_view s_;
  size_t pos_ = 0;
  size_t base_;
  int maxDepth_;
  size_t maxValues_;
  size_t values_ = 0;

  /// Throws JsonError at text offset `at`.
  [[noreturn]] void failAt(size_t at, const std::string &what) {
    throw JsonError(base_ + at, what);
  }
  /// Fails with "WHAT, found X" where X describes the character at pos_.
  [[noreturn]] void fail(const std::string &what) { failAt(pos_, what + ", found " + describeHere()); }

  /// Describes the character at pos_ for a message.
  std::string describeHere() const {
    if (pos_ >= s_.size()) return "the end of the text";
    unsigned char c = static_cast<unsigned char>(s_[pos_]);
    if (c >= 0x20 && c < 0x7f) return std::string("'") + static_cast<char>(c) + "'";
    return "byte " + printableForMessage(std::string_view(&s_[pos_], 1));
  }

  /// Skips JSON whitespace (space, tab, LF, CR).
  void skipWs() {
    while (pos_ < s_.size()) {
      char c = s_[pos_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') ++pos_;
      else break;
    }
  }

  /// True if the next character is `c`.
  bool peekIs(char c) const { return pos_ < s_.size() && s_[pos_] == c; }

  /// Parses any value; `depth` is the number of enclosing arrays/objects.
  JsonValue parseValue(int depth) {
    JsonValue v;
    v.offset = base_ + pos_;
    if (pos_ >= s_.size()) fail("expected a value");
    if (++values_ > maxValues_) failAt(pos_, "more than " + std::to_string(maxValues_) + " values in one JSON text");
    char c = s_[pos_];
    switch (c) {
    case '{':
      if (depth >= maxDepth_) failAt(pos_, "nesting deeper than " + std::to_string(maxDepth_) + " levels");
      parseObject(v, depth + 1);
      return v;
    case '[':
      if (depth >= maxDepth_) failAt(pos_, "nesting deeper than " + std::to_string(maxDepth_) + " levels");
      parseArray(v, depth + 1);
      return v;
    case '"':
      v.kind = JsonValue::Kind::String;
      v.text = parseString();
      return v;
    case 't':
      literal("true");
      v.kind = JsonValue::Kind::Bool;
      v.boolean = true;
      return v;
    case 'f':
      literal("false");
      v.kind = JsonValue::Kind::Bool;
      return v;
    case 'n':
      literal("null");
      return v;
    default:
      if (c == '-' || (c >= '0' && c <= '9')) {
        v.kind = JsonValue::Kind::Number;
        v.text = parseNumber();
        return v;
      }
      fail("expected a value");
    }
  }

  /// Consumes the literal `word` (true, false, null).
  void literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) fail("expected '" + std::string(word) + "'");
    pos_ += word.size();
  }

  /// ASCII digit test.
  static bool isDigit(char c) { return c >= '0' && c <= '9'; }

  /// Validates a number against the JSON grammar and returns its text.
  std::string parseNumber() {
    size_t start = pos_;
    if (peekIs('-')) ++pos_;
    if (peekIs('0')) {
      ++pos_;
      if (pos_ < s_.size() && isDigit(s_[pos_])) fail("leading zeros are not allowed in a number; expected '.', 'e' or the end of the number");
    } else if (pos_ < s_.size() && isDigit(s_[pos_])) {
      while (pos_ < s_.size() && isDigit(s_[pos_])) ++pos_;
    } else {
      fail("expected a digit");
    }
    if (peekIs('.')) {
      ++pos_;
      if (!(pos_ < s_.size() && isDigit(s_[pos_]))) fail("expected a digit after '.'");
      while (pos_ < s_.size() && isDigit(s_[pos_])) ++pos_;
    }
    if (peekIs('e') || peekIs('E')) {
      ++pos_;
      if (peekIs('+') || peekIs('-')) ++pos_;
      if (!(pos_ < s_.size() && isDigit(s_[pos_]))) fail("expected a digit in the exponent");
      while (pos_ < s_.size() && isDigit(s_[pos_])) ++pos_;
    }
    return std::string(s_.substr(start, pos_ - start));
  }

  /// Reads the 4 hex digits of a \u escape.
  uint32_t hex4() {
    if (s_.size() - pos_ < 4) failAt(pos_, "expected 4 hex digits after \\u, found the end of the text");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s_[pos_];
      uint32_t d;
      if (c >= '0' && c <= '9') d = static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') d = static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') d = static_cast<uint32_t>(c - 'A' + 10);
      else fail("expected a hex digit in a \\u escape");
      v = v * 16 + d;
      ++pos_;
    }
    return v;
  }

  /// Parses a string (pos_ at the opening quote) and returns it decoded.
  std::string parseString() {
    size_t open = pos_;
    ++pos_; // opening quote
    std::string out;
    for (;;) {
      if (pos_ >= s_.size()) failAt(open, "string is not terminated (expected '\"' before the end of the text)");
      unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) fail("control characters must be escaped in a string; expected a character or '\"'");
      if (c == '\\') {
        size_t escAt = pos_;
        ++pos_;
        if (pos_ >= s_.size()) fail("expected an escape character after '\\'");
        char e = s_[pos_++];
        switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xdc00 && cp <= 0xdfff)
            failAt(escAt, "lone low surrogate in a \\u escape (expected a high surrogate \\uD800-\\uDBFF first)");
          if (cp >= 0xd800 && cp <= 0xdbff) {
            if (!(s_.size() - pos_ >= 2 && s_[pos_] == '\\' && s_[pos_ + 1] == 'u'))
              failAt(escAt, "lone high surrogate in a \\u escape (expected a \\uDC00-\\uDFFF escape after it)");
            size_t lowAt = pos_;
            pos_ += 2;
            uint32_t lo = hex4();
            if (lo < 0xdc00 || lo > 0xdfff)
              failAt(lowAt, "expected a low surrogate \\uDC00-\\uDFFF after a high surrogate");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          }
          appendUtf8(out, cp);
          break;
        }
        default:
          --pos_;
          fail("invalid escape; expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u after '\\'");
        }
        continue;
      }
      size_t len = utf8SequenceLength(s_, pos_);
      if (len == 0) failAt(pos_, "invalid UTF-8 in a string");
      out.append(s_.data() + pos_, len);
      pos_ += len;
    }
  }

  /// Parses an array (pos_ at '[') into `v`.
  void parseArray(JsonValue &v, int depth) {
    v.kind = JsonValue::Kind::Array;
    ++pos_; // '['
    skipWs();
    if (peekIs(']')) {
      ++pos_;
      return;
    }
    for (;;) {
      skipWs();
      v.items.push_back(parseValue(depth));
      skipWs();
      if (peekIs(',')) {
        ++pos_;
        continue;
      }
      if (peekIs(']')) {
        ++pos_;
        return;
      }
      fail("expected ',' or ']'");
    }
  }

  /// Parses an object (pos_ at '{') into `v`.
  void parseObject(JsonValue &v, int depth) {
    v.kind = JsonValue::Kind::Object;
    ++pos_; // '{'
    skipWs();
    if (peekIs('}')) {
      ++pos_;
      return;
    }
    for (;;) {
      skipWs();
      if (!peekIs('"')) fail("expected a string (an object key)");
      std::string key = parseString();
      skipWs();
      if (!peekIs(':')) fail("expected ':'");
      ++pos_;
      skipWs();
      JsonValue val = parseValue(depth);
      v.members.push_back(JsonMember{std::move(key), std::move(val)});
      skipWs();
      if (peekIs(',')) {
        ++pos_;
        continue;
      }
      if (peekIs('}')) {
        ++pos_;
        return;
      }
      fail("expected ',' or '}'");
    }
  }
};

} // namespace

JsonValue parseJson(std::string_view text, size_t baseOffset, int maxDepth, size_t maxValues) {
  return Parser(text, baseOffset, maxDepth, maxValues).parseDocument();
}

bool isValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t len = utf8SequenceLength(s, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string jsonQuote(std::string_view s) {
  static const char *hex = "0123456789abcdef";
  std::string out = "\"";
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
    case '"': out += "\\\""; break;
    case '\\': out += "\\\\"; break;
    case '\b': out += "\\b"; break;
    case '\f': out += "\\f"; break;
    case '\n': out += "\\n"; break;
    case '\r': out += "\\r"; break;
    case '\t': out += "\\t"; break;
    default:
      if (c < 0x20) {
        out += "\\u00";
        out += hex[c >> 4];
        out += hex[c & 15];
      } else {
        out += ch;
      }
    }
  }
  return out + "\"";
}

} // namespace gradc::rt
