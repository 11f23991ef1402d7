// RankVariants.cpp: --ranks N1,N2,... -o EXE: the variants EXE.ranksN, each compiled by the one pipeline, and the rank launcher copied to EXE.
#include "driver/RankVariants.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include <fmt/format.h>

#include "driver/Pipeline.h"
#include "support/Output.h"

#ifndef GRADC_RANK_LAUNCHER
#define GRADC_RANK_LAUNCHER "" // set by compiler/CMakeLists.txt: the build tree's launcher
#endif

namespace fs = std::filesystem;

namespace gradc {

bool parseRanks(const std::string &text, PipelineOptions &opts, std::ostream &err) {
  std::vector<int64_t> counts;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    int64_t n = 0;
    bool ok = !item.empty() && item.size() <= 6 && item.find_first_not_of("0123456789") == std::string::npos;
    if (ok)
      n = std::stoll(item);
    if (!ok || n < 1 || n > 65536) {
      err << fmt::format("gradc: error: --ranks takes a number of processes between 1 and 65536, or a list of them "
                         "(1,2,4); got '{}'\n", text);
      return false;
    }
    if (std::find(counts.begin(), counts.end(), n) != counts.end()) {
      err << fmt::format("gradc: error: --ranks lists {} twice\n", n);
      return false;
    }
    counts.push_back(n);
    start = comma + 1;
  }
  if (counts.size() == 1)
    opts.ranks = counts[0];
  else
    opts.rankVariants = counts;
  return true;
}

namespace {

/// The launcher's bytes: beside this gradc (installed, or the build tree's bin/), else the
/// build tree's.
bool readLauncher(std::string &bytes, std::ostream &err) {
  std::vector<fs::path> candidates;
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec)
    candidates.push_back(self.parent_path() / "gradc-rank-launcher");
  candidates.push_back(GRADC_RANK_LAUNCHER);
  for (const fs::path &p : candidates) {
    std::ifstream in(p, std::ios::binary);
    if (!in)
      continue;
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (!bytes.empty())
      return true;
  }
  err << "gradc: error: cannot find gradc-rank-launcher (it is built and installed beside gradc)\n";
  return false;
}

/// OUTPUT.ranksN for n.
std::string variantPath(const std::string &output, int64_t n) { return fmt::format("{}.ranks{}", output, n); }

} // namespace

int buildRankVariants(const PipelineOptions &opts, std::ostream &err) {
  if (!opts.emit.empty() || opts.output.empty() || opts.output == "-") {
    err << "gradc: error: a list of --ranks builds an executable: give -o EXE and no --emit\n";
    return 1;
  }
  std::string launcher;
  if (!readLauncher(launcher, err))
    return 1;
  std::vector<std::string> written;
  auto removeWritten = [&] {
    std::error_code ec;
    for (const std::string &w : written)
      fs::remove(w, ec);
  };
  for (int64_t n : opts.rankVariants) {
    PipelineOptions v = opts;
    v.rankVariants.clear();
    v.ranks = n;
    v.output = variantPath(opts.output, n);
    if (int rc = runPipeline(v, err)) {
      removeWritten();
      return rc;
    }
    written.push_back(v.output);
  }
  if (!writeFileAtomically(opts.output, launcher, err, /*executable=*/true)) {
    removeWritten();
    return 1;
  }
  // Variants of an earlier build with another list would still be found by the launcher.
  const fs::path out(opts.output);
  const std::string prefix = out.filename().string() + ".ranks";
  std::error_code ec;
  const fs::path dir = out.has_parent_path() ? out.parent_path() : fs::path(".");
  std::vector<fs::path> stale;
  for (const auto &e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.compare(0, prefix.size(), prefix) == 0 && name.size() > prefix.size() &&
        name.find_first_not_of("0123456789", prefix.size()) == std::string::npos &&
        std::find(written.begin(), written.end(), (dir / name).string()) == written.end() &&
        std::find(written.begin(), written.end(), name) == written.end())
      stale.push_back(e.path());
  }
  for (const fs::path &p : stale)
    fs::remove(p, ec);
  return 0;
}

} // namespace gradc
