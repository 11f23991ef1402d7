// Diagnostics.h: source files, source locations and clang-style error reporting.
#pragma once

#include <cstdint>
#include <memory>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace gradc {

/// A position in a source file: file index (into SourceManager), 1-based line and column.
/// A default-constructed location (line 0) means "no location".
struct SrcLoc {
  uint32_t file = 0;
  uint32_t line = 0;
  uint32_t col = 0;
  bool valid() const { return line != 0; }
};

/// One loaded source text, with the offsets of its line starts.
struct SourceFile {
  std::string path;
  std::string text;
  std::vector<size_t> lineStarts;
};

/// Owns every source text the compiler reads (the model file, the prelude).
class SourceManager {
public:
  /// Adds a file's text; returns its index for SrcLoc::file.
  uint32_t add(std::string path, std::string text);
  /// Reads a file from disk; returns false (and leaves `error` set) when it cannot.
  bool load(const std::string &path, uint32_t &id, std::string &error);
  const SourceFile &get(uint32_t id) const { return *files_.at(id); }
  /// The text of the line `loc` points into, without its newline.
  std::string_view lineText(SrcLoc loc) const;
  /// "path:line:col".
  std::string describe(SrcLoc loc) const;

private:
  std::vector<std::unique_ptr<SourceFile>> files_;
};

/// Thrown after an error has been reported; the driver catches it and exits non-zero.
class CompileError : public std::runtime_error {
public:
  CompileError() : std::runtime_error("compile error") {}
};

/// Prints `file:line:col: error: msg`, the source line and a caret, plus notes for the
/// current instantiation context (the user's line that called a prelude layer).
class Diagnostics {
public:
  Diagnostics(const SourceManager &sm, std::ostream &os) : sm_(sm), os_(&os) {}

  /// Reports an error at `loc` with the context notes and throws CompileError.
  [[noreturn]] void error(SrcLoc loc, const std::string &msg);
  template <typename... A>
  [[noreturn]] void error(SrcLoc loc, fmt::format_string<A...> f, A &&...args) {
    error(loc, fmt::format(f, std::forward<A>(args)...));
  }
  /// Prints a note (no throw).
  void note(SrcLoc loc, const std::string &msg);
  /// Prints a warning (no throw).
  void warning(SrcLoc loc, const std::string &msg);

  /// Enters a context: errors reported inside it get "note: <what>" at `site`. `subject`
  /// names what the context instantiates ("layer 'head' (Dense(9, 1))"): an error raised in
  /// another file than the outermost context's (inside a prelude layer, for a cause at the
  /// user's call) is reported at the user's innermost site, prefixed with the subject, and
  /// the library location follows as a note.
  void pushContext(SrcLoc site, std::string what, std::string subject = {}) {
    context_.push_back({site, std::move(what), std::move(subject)});
  }
  void popContext() { context_.pop_back(); }
  unsigned errorCount() const { return errors_; }
  /// Prints to `os` from now on; returns the stream printed to before (DiagCapture).
  std::ostream *redirect(std::ostream *os) {
    std::swap(os, os_);
    return os;
  }
  /// Sets the error count back (DiagCapture: errors of an abandoned trial do not count).
  void restoreErrorCount(unsigned n) { errors_ = n; }

private:
  void print(SrcLoc loc, std::string_view kind, const std::string &msg);
  struct Context {
    SrcLoc site;
    std::string what;
    std::string subject;
  };
  const SourceManager &sm_;
  std::ostream *os_;
  std::vector<Context> context_;
  unsigned errors_ = 0;
};

/// RAII helper for Diagnostics::pushContext / popContext.
class DiagContext {
public:
  DiagContext(Diagnostics &d, SrcLoc site, std::string what, std::string subject = {}) : d_(d) {
    d_.pushContext(site, std::move(what), std::move(subject));
  }
  ~DiagContext() { d_.popContext(); }
  DiagContext(const DiagContext &) = delete;
  DiagContext &operator=(const DiagContext &) = delete;

private:
  Diagnostics &d_;
};

/// RAII: while alive, what `d` prints goes to text() instead, and the errors it reports are
/// not counted afterwards. For a trial the compiler may abandon (the step graph of --generate,
/// elaborate/StepGraph.cpp): its first error explains why, without failing the compile.
class DiagCapture {
public:
  explicit DiagCapture(Diagnostics &d) : d_(d), saved_(d.redirect(&buf_)), errors_(d.errorCount()) {}
  ~DiagCapture() {
    d_.redirect(saved_);
    d_.restoreErrorCount(errors_);
  }
  DiagCapture(const DiagCapture &) = delete;
  DiagCapture &operator=(const DiagCapture &) = delete;
  /// What was printed so far.
  std::string text() const { return buf_.str(); }

private:
  Diagnostics &d_;
  std::ostringstream buf_;
  std::ostream *saved_;
  unsigned errors_;
};

} // namespace gradc
