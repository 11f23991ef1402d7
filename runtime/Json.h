// Json.h: a small strict JSON (RFC 8259) parser with byte-offset errors and a depth limit, plus the string quoting the runtime's JSON writers use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "Tensor.h"

namespace gradc::rt {

struct JsonMember;

/// A parsed JSON value. Objects keep their members in file order, duplicates included
/// (callers decide whether a duplicate key is an error).
struct JsonValue {
  /// What kind of value this is.
  enum class Kind { Null, Bool, Number, String, Array, Object };
  /// The kind; the fields below that do not belong to it are empty.
  Kind kind = Kind::Null;
  /// Bool: the value.
  bool boolean = false;
  /// String: the decoded UTF-8 text. Number: the literal exactly as written.
  std::string text;
  /// Array: the elements.
  std::vector<JsonValue> items;
  /// Object: the members in file order.
  std::vector<JsonMember> members;
  /// Byte offset of the value's first character (including parseJson's baseOffset).
  size_t offset = 0;

  /// The first member named `key` of an object, or null (also if this is not an object).
  const JsonValue *find(std::string_view key) const;
  /// A Number written as an integer (no fraction or exponent) that fits int64_t.
  bool asInt64(int64_t &out) const;
  /// A Number that is finite as a double.
  bool asDouble(double &out) const;
  /// "null", "a boolean", "a number", "a string", "an array" or "an object", for messages.
  const char *kindName() const;
};

/// One member of a JSON object.
struct JsonMember {
  /// The key (decoded).
  std::string key;
  /// The value.
  JsonValue value;
};

/// A syntax error: `offset` is the byte offset (including parseJson's baseOffset) and
/// `detail` says what was expected; what() is "DETAIL at byte OFFSET".
struct JsonError : DataError {
  /// Constructs the error and its message.
  JsonError(size_t offset, std::string detail);
  /// Byte offset of the error.
  size_t offset;
  /// What was expected and found, without the offset.
  std::string detail;
};

/// Parses `text` as exactly one JSON value, optionally surrounded by whitespace. Strict:
/// no comments, no trailing commas, no NaN/Infinity, no leading zeros, control characters
/// must be escaped, strings must be valid UTF-8, \uXXXX surrogates must pair up. Error
/// offsets are reported as baseOffset + the offset in `text`. Nesting deeper than
/// `maxDepth` arrays/objects is an error, and so are more than `maxValues` values in all
/// (a bound on memory: each value costs about 100 bytes). Throws JsonError.
JsonValue parseJson(std::string_view text, size_t baseOffset = 0, int maxDepth = 64,
                    size_t maxValues = 4000000);

/// True if `s` is well-formed UTF-8 (no overlong forms, no surrogates, at most U+10FFFF).
bool isValidUtf8(std::string_view s);

/// `s` as a quoted JSON string: '"' and '\' escaped, control characters as \n, \t, ...
/// or \u00XX, everything else (UTF-8) verbatim.
std::string jsonQuote(std::string_view s);

/// `s` for an error message: printable ASCII and valid non-ASCII UTF-8 verbatim, control
/// characters and invalid bytes as \xNN, cut after about `maxLen` bytes with "..." appended.
std::string printableForMessage(std::string_view s, size_t maxLen = 60);

} // namespace gradc::rt
