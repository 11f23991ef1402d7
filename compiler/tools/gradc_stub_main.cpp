// gradc_stub_main.cpp: a stand-in for the gradc driver, built only while
// compiler/tools/gradc.cpp does not exist, so the build and the lit smoke test work.
#include <cstring>
#include <iostream>

namespace gradc {
extern const char *const kPreludeText;
extern const char *const kPreludeName;
} // namespace gradc

int main(int argc, char **argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--version") == 0) {
      std::cout << "gradc stub\n";
      return 0;
    }
    if (std::strcmp(argv[i], "--print-prelude") == 0) {
      std::cout << "# " << gradc::kPreludeName << "\n" << gradc::kPreludeText;
      return 0;
    }
  }
  std::cerr << "gradc stub: the real driver (compiler/tools/gradc.cpp) is not built yet\n";
  return 1;
}
