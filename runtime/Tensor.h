// Tensor.h: the runtime's element types (DType), its simple owning host tensor (HostTensor) and the DataError exception that every runtime loader throws on bad input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the gradc runtime assumes a little-endian host (safetensors data is little-endian)"
#endif

namespace gradc::rt {

/// Error in input data (a file's contents, or a parameter that describes how to read it).
/// what() is the complete, user-facing message, e.g.
/// `data/series.csv:17: column 'value': expected a number, found 'abc'`.
struct DataError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The element types the runtime computes with; the names are those of safetensors.
enum class DType { F32, F64, I32, I64 };

/// The safetensors name of a dtype: "F32", "F64", "I32" or "I64".
inline const char *dtypeName(DType t) {
  switch (t) {
  case DType::F32: return "F32";
  case DType::F64: return "F64";
  case DType::I32: return "I32";
  case DType::I64: return "I64";
  }
  return "?";
}

/// Parses a safetensors dtype name ("F32", "F64", "I32", "I64"); false if it is none of them.
inline bool parseDType(std::string_view name, DType &out) {
  if (name == "F32") { out = DType::F32; return true; }
  if (name == "F64") { out = DType::F64; return true; }
  if (name == "I32") { out = DType::I32; return true; }
  if (name == "I64") { out = DType::I64; return true; }
  return false;
}

/// Size of one element in bytes.
inline size_t dtypeSize(DType t) {
  return (t == DType::F32 || t == DType::I32) ? 4 : 8;
}

/// Multiplies the extents of `shape` into `out`; false if an extent is negative or the
/// product overflows int64_t. The empty shape (a scalar) has one element.
inline bool checkedNumel(const std::vector<int64_t> &shape, int64_t &out) {
  bool anyZero = false;
  for (int64_t d : shape) {
    if (d < 0) return false;
    if (d == 0) anyZero = true;
  }
  if (anyZero) { out = 0; return true; }
  int64_t n = 1;
  for (int64_t d : shape) {
    if (n > std::numeric_limits<int64_t>::max() / d) return false;
    n *= d;
  }
  out = n;
  return true;
}

/// Formats a shape as "[2, 3]" (the scalar shape is "[]").
inline std::string shapeString(const std::vector<int64_t> &shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

/// A simple owning tensor in host memory, used for I/O: a dtype, a shape and the
/// elements as little-endian bytes in row-major order.
/// Invariant kept by the runtime's loaders and constructors:
/// bytes.size() == numel() * dtypeSize(dtype) (see consistent()).
struct HostTensor {
  /// Element type.
  DType dtype = DType::F32;
  /// Extents, outermost first; empty for a scalar.
  std::vector<int64_t> shape;
  /// The elements, row-major, little-endian.
  std::vector<unsigned char> bytes;

  /// An empty F32 scalar with no storage (not consistent() until filled).
  HostTensor() = default;
  /// A zero-filled tensor of the given dtype and shape. Throws DataError if an extent is
  /// negative or the size overflows.
  HostTensor(DType t, std::vector<int64_t> s) : dtype(t), shape(std::move(s)) {
    int64_t n = 0;
    if (!checkedNumel(shape, n) ||
        static_cast<uint64_t>(n) > std::numeric_limits<size_t>::max() / dtypeSize(dtype) ||
        static_cast<uint64_t>(n) * dtypeSize(dtype) > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      throw DataError("invalid tensor shape " + shapeString(shape) + " for dtype " + dtypeName(dtype));
    bytes.assign(static_cast<size_t>(n) * dtypeSize(dtype), 0);
  }

  /// Number of elements: the product of the extents (1 for a scalar); -1 if the shape is
  /// invalid (negative extent or overflow).
  int64_t numel() const {
    int64_t n = 0;
    return checkedNumel(shape, n) ? n : -1;
  }
  /// Size of one element in bytes.
  size_t itemSize() const { return dtypeSize(dtype); }
  /// True if bytes holds exactly numel() elements of dtype.
  bool consistent() const {
    int64_t n = numel();
    return n >= 0 && static_cast<uint64_t>(n) <= std::numeric_limits<size_t>::max() / itemSize() &&
           bytes.size() == static_cast<size_t>(n) * itemSize();
  }
  /// "F32[2, 3]".
  std::string typeString() const { return std::string(dtypeName(dtype)) + shapeString(shape); }

  /// Typed views of the elements; throw DataError if the dtype differs.
  float *f32() { return as<float>(DType::F32); }
  /// \copydoc f32()
  const float *f32() const { return as<float>(DType::F32); }
  /// \copydoc f32()
  double *f64() { return as<double>(DType::F64); }
  /// \copydoc f32()
  const double *f64() const { return as<double>(DType::F64); }
  /// \copydoc f32()
  int32_t *i32() { return as<int32_t>(DType::I32); }
  /// \copydoc f32()
  const int32_t *i32() const { return as<int32_t>(DType::I32); }
  /// \copydoc f32()
  int64_t *i64() { return as<int64_t>(DType::I64); }
  /// \copydoc f32()
  const int64_t *i64() const { return as<int64_t>(DType::I64); }

private:
  /// The storage comes from operator new, which aligns it for every element type here.
  template <class T> T *as(DType want) {
    check(want);
    return reinterpret_cast<T *>(bytes.data());
  }
  template <class T> const T *as(DType want) const {
    check(want);
    return reinterpret_cast<const T *>(bytes.data());
  }
  void check(DType want) const {
    if (dtype != want)
      throw DataError(std::string("tensor has dtype ") + dtypeName(dtype) + ", not " + dtypeName(want));
  }
};

} // namespace gradc::rt
