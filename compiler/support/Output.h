// Output.h: writing the compiler's output files: atomically (a temporary file beside the
// target, then a rename), or to stdout, and private temporary directories for builds.
#pragma once

#include <ostream>
#include <string>
#include <string_view>

namespace gradc {

/// Writes `bytes` to `path` atomically: into a temporary file beside it, then renamed over
/// it, so a reader never sees a partial file and a failed write leaves `path` as it was.
/// With `executable` the file gets mode 0777 (less the umask) instead of 0666. A failure is
/// reported on `err` as `gradc: error: cannot write 'PATH': REASON` and returns false.
bool writeFileAtomically(const std::string &path, std::string_view bytes, std::ostream &err, bool executable = false);

/// An --emit result: to stdout for "" or "-", else writeFileAtomically(path, text).
bool writeOutput(const std::string &path, std::string_view text, std::ostream &err);

/// Creates a fresh directory only this user can read, `gradc-XXXXXX` under the system's
/// temporary directory (mkdtemp). Returns its path, or "" with `error` set.
std::string makeTempDirectory(std::string &error);

} // namespace gradc
