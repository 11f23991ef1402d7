// Output.cpp: atomic file writes (temporary file, then rename), --emit to stdout, and
// mkdtemp temporary directories.
#include "support/Output.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

namespace gradc {

namespace {

/// Writes all of `bytes` to the open descriptor `fd`; false with errno set on failure.
bool writeAll(int fd, std::string_view bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

} // namespace

bool writeFileAtomically(const std::string &path, std::string_view bytes, std::ostream &err, bool executable) {
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  auto fail = [&](const std::string &reason) {
    err << fmt::format("gradc: error: cannot write '{}': {}\n", path, reason);
    ::unlink(tmp.c_str());
    return false;
  };
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, executable ? 0777 : 0666);
  if (fd < 0) {
    err << fmt::format("gradc: error: cannot write '{}': {}\n", path, std::strerror(errno));
    return false;
  }
  bool ok = writeAll(fd, bytes);
  int writeErrno = errno;
  if (::close(fd) != 0 && ok) {
    ok = false;
    writeErrno = errno;
  }
  if (!ok)
    return fail(std::strerror(writeErrno));
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    return fail(std::strerror(errno));
  return true;
}

bool writeOutput(const std::string &path, std::string_view text, std::ostream &err) {
  if (path.empty() || path == "-") {
    std::cout << text;
    std::cout.flush();
    if (!std::cout) {
      err << "gradc: error: cannot write to stdout\n";
      return false;
    }
    return true;
  }
  return writeFileAtomically(path, text, err);
}

std::string makeTempDirectory(std::string &error) {
  std::error_code ec;
  std::filesystem::path base = std::filesystem::temp_directory_path(ec);
  if (ec) {
    error = fmt::format("no temporary directory: {}", ec.message());
    return "";
  }
  std::string pattern = (base / "gradc-XXXXXX").string();
  if (!::mkdtemp(pattern.data())) {
    error = fmt::format("cannot create a directory in {}: {}", base.string(), std::strerror(errno));
    return "";
  }
  return pattern;
}

} // namespace gradc
