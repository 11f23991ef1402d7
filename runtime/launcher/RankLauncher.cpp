// RankLauncher.cpp: the executable `gradc --ranks N1,N2,... -o EXE` writes at EXE: it runs the variant EXE.ranksN compiled for the number of processes mpirun started (1 without mpirun), so one command line serves every listed -np.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

/// An integer environment variable of Open MPI's (OMPI_COMM_WORLD_SIZE, _RANK), or `absent`.
long envNumber(const char *name, long absent) {
  const char *s = std::getenv(name);
  if (!s || !*s) return absent;
  char *end = nullptr;
  const long v = std::strtol(s, &end, 10);
  return *end == '\0' && v >= 0 ? v : absent;
}

/// The rank counts of the variants beside `self` (files SELF.ranksN), ascending.
std::vector<long> variants(const fs::path &self) {
  std::vector<long> out;
  const std::string prefix = self.filename().string() + ".ranks";
  std::error_code ec;
  for (const auto &e : fs::directory_iterator(self.parent_path(), ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.find_first_not_of("0123456789") == std::string::npos) out.push_back(std::atol(digits.c_str()));
  }
  std::sort(out.begin(), out.end());
  return out;
}

/// "1, 2 and 4".
std::string listed(const std::vector<long> &v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i)
    s += (i == 0 ? "" : i + 1 == v.size() ? " and " : ", ") + std::to_string(v[i]);
  return s.empty() ? "no" : s;
}

} // namespace

int main(int argc, char **argv) {
  (void)argc;
  const long ranks = envNumber("OMPI_COMM_WORLD_SIZE", 1), rank = envNumber("OMPI_COMM_WORLD_RANK", 0);
  const std::string name = fs::path(argv[0]).filename().string();
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) {
    std::fprintf(stderr, "%s (rank %ld): error: cannot find its own file: %s\n", name.c_str(), rank, ec.message().c_str());
    return 2;
  }
  const fs::path target = self.string() + ".ranks" + std::to_string(ranks);
  if (::access(target.c_str(), X_OK) == 0) {
    ::execv(target.c_str(), argv);  // argv[0] stays: the variant's messages name EXE
    std::fprintf(stderr, "%s (rank %ld): error: cannot run %s: %s\n", name.c_str(), rank, target.c_str(), std::strerror(errno));
    return 2;
  }
  if (rank == 0) {
    const std::vector<long> have = variants(self);
    const std::string started = std::getenv("OMPI_COMM_WORLD_SIZE") ? "mpirun started " + std::to_string(ranks)
                                                                    : std::string("it was started without mpirun (one process)");
    std::fprintf(stderr,
                 "%s (rank 0): error: compiled for %s ranks (gradc --ranks; the files %s.ranksN beside it), and %s; "
                 "compile it with %ld in the --ranks list (the batch must be divisible by it)\n",
                 name.c_str(), listed(have).c_str(), self.filename().c_str(), started.c_str(), ranks);
  }
  return 2;
}
