// Build.cpp: compiles and links the generated C++ against the runtime (libgradcrt.a),
// finding the runtime in $GRADC_RUNTIME_DIR, beside an installed gradc, in the build tree or the install prefix.
#include "codegen/Build.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "support/Output.h"

namespace fs = std::filesystem;

namespace gradc {

namespace {

/// The runtime's headers and static library: (include dir, library file), or empty.
std::pair<std::string, std::string> findRuntime() {
  std::vector<std::pair<std::string, std::string>> candidates;
  if (const char *d = std::getenv("GRADC_RUNTIME_DIR"))
    candidates.push_back({fmt::format("{}/include", d), fmt::format("{}/lib/libgradcrt.a", d)});
  // Installed (cmake --install): PREFIX/bin/gradc beside PREFIX/include/gradc, PREFIX/lib.
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path prefix = self.parent_path().parent_path();
    candidates.push_back({(prefix / "include" / "gradc").string(), (prefix / "lib" / "libgradcrt.a").string()});
  }
  candidates.push_back({GRADC_RUNTIME_SRC_DIR, GRADC_RUNTIME_LIB});
  candidates.push_back({GRADC_INSTALL_PREFIX "/include/gradc", GRADC_INSTALL_PREFIX "/lib/libgradcrt.a"});
  for (const auto &c : candidates)
    if (fs::exists(fs::path(c.first) / "Model.h") && fs::exists(c.second))
      return c;
  return {};
}

/// The C++ compiler when $CXX is unset: that of a sanitized gradc build (its runtime is
/// instrumented, so the same clang must link it), else c++.
const char *defaultCompiler() {
#ifndef GRADC_MPI_LIBS
#define GRADC_MPI_LIBS "" // set by compiler/CMakeLists.txt: the runtime's MPI libraries
#endif

#ifdef GRADC_DEFAULT_CXX
  return GRADC_DEFAULT_CXX;
#else
  return "c++";
#endif
}

/// Extra compile and link flags: those of a sanitized build (GRADC_SANITIZE), then
/// $GRADC_EXTRA_CXXFLAGS.
std::string extraFlags() {
#ifdef GRADC_GENERATED_CXXFLAGS
  std::string extra = GRADC_GENERATED_CXXFLAGS;
#else
  std::string extra;
#endif
  if (const char *e = std::getenv("GRADC_EXTRA_CXXFLAGS"); e && *e)
    extra += std::string(extra.empty() ? "" : " ") + e;
  return extra;
}

std::string shellQuote(const std::string &s) {
  std::string o = "'";
  for (char c : s) {
    if (c == '\'')
      o += "'\\''";
    else
      o += c;
  }
  return o + "'";
}

/// Writes the built `exe` to `output` (atomically) and removes the temporary directory `dir`.
int installExecutable(const fs::path &dir, const fs::path &exe, const std::string &output, std::ostream &err) {
  std::ifstream in(exe, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) {
    err << fmt::format("gradc: error: cannot read the built executable {}\n", exe.string());
    return 1;
  }
  if (!writeFileAtomically(output, bytes, err, /*executable=*/true))
    return 1;
  std::error_code ec;
  fs::remove_all(dir, ec);
  return 0;
}

/// A fresh temporary directory for one build, or "" after reporting why not.
std::string buildDirectory(std::ostream &err) {
  std::string error;
  std::string dir = makeTempDirectory(error);
  if (dir.empty())
    err << "gradc: error: " << error << "\n";
  return dir;
}

} // namespace

int buildExecutable(const std::string &cpp, const std::string &output, const CodegenOptions &opts, std::ostream &err) {
  auto [include, lib] = findRuntime();
  if (include.empty()) {
    err << "gradc: error: cannot find the gradc runtime (Model.h and libgradcrt.a); set GRADC_RUNTIME_DIR\n";
    return 1;
  }
  const fs::path dir = buildDirectory(err);
  if (dir.empty())
    return 1;
  fs::path src = dir / "model.cpp", exe = dir / "model.exe";
  if (!writeFileAtomically(src.string(), cpp, err))
    return 1;
  const char *defaultCxx = defaultCompiler();
  const std::string extra = extraFlags();
  const char *cxx = std::getenv("CXX");
  std::string cmd = fmt::format("{} -std=c++17 -O{} -march={} -ffp-contract=off -fno-math-errno {} -w -I{} {} {} -lz -lpthread -o {} 2> {}",
                                cxx && *cxx ? cxx : defaultCxx, opts.optLevel, opts.targetCpu, extra, shellQuote(include),
                                shellQuote(src.string()), shellQuote(lib), GRADC_MPI_LIBS,
                                shellQuote(exe.string()), shellQuote((dir / "cxx.log").string()));
  if (opts.verbose)
    err << cmd << "\n";
  if (std::system(cmd.c_str()) != 0) {
    std::ifstream log(dir / "cxx.log");
    std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    err << fmt::format("gradc: internal error: the C++ compiler failed on the generated code (kept in {}):\n{}", dir.string(),
                       text.substr(0, 4000));
    return 2;
  }
  return installExecutable(dir, exe, output, err);
}

int linkExecutable(const std::string &object, const std::string &output, const CodegenOptions &opts, std::ostream &err) {
  auto [include, lib] = findRuntime();
  if (include.empty()) {
    err << "gradc: error: cannot find the gradc runtime (libgradcrt.a); set GRADC_RUNTIME_DIR\n";
    return 1;
  }
  const fs::path dir = buildDirectory(err);
  if (dir.empty())
    return 1;
  fs::path obj = dir / "model.o", exe = dir / "model.exe";
  if (!writeFileAtomically(obj.string(), object, err))
    return 1;
  const char *cxx = std::getenv("CXX");
  // A sanitized build's runtime needs the sanitizer runtimes at link time (extraFlags).
  std::string cmd = fmt::format("{} {} {} {} -lz -lpthread {} -o {} 2> {}", cxx && *cxx ? cxx : defaultCompiler(), extraFlags(),
                                shellQuote(obj.string()), shellQuote(lib), GRADC_MPI_LIBS, shellQuote(exe.string()),
                                shellQuote((dir / "link.log").string()));
  if (opts.verbose)
    err << cmd << "\n";
  if (std::system(cmd.c_str()) != 0) {
    std::ifstream log(dir / "link.log");
    std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    err << fmt::format("gradc: error: linking the model's object with the runtime failed (kept in {}):\n{}", dir.string(),
                       text.substr(0, 4000));
    return 1;
  }
  return installExecutable(dir, exe, output, err);
}

} // namespace gradc
