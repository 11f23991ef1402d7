// Run.h: `gradc run`: compile a model in process and train it now, writing no files.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace gradc {

/// Compiles `model` and hands `exeArgs` (the executable's flags, section 4 of the contract)
/// to the training driver. With `interpret`, the reference interpreter runs the steps in
/// double precision (slow, needs no C++ compiler). Returns the exit code.
int runModel(const std::string &model, const std::vector<std::string> &exeArgs, bool interpret, std::ostream &err);

} // namespace gradc
