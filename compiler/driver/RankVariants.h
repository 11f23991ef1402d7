// RankVariants.h: --ranks N1,N2,... -o EXE: one executable variant per rank count, and a launcher at EXE that runs the one mpirun asks for.
#pragma once

#include <ostream>
#include <string>

#include "driver/Options.h"

namespace gradc {

/// Parses --ranks: "N" sets opts.ranks; "N1,N2,..." (distinct, ascending or not) sets
/// opts.rankVariants. Each count must be in [1, 65536]. Reports on `err` and returns false.
bool parseRanks(const std::string &text, PipelineOptions &opts, std::ostream &err);

/// Compiles opts.input once per count of opts.rankVariants into OUTPUT.ranksN (each exactly the
/// executable of `--ranks N -o OUTPUT.ranksN`), removes other OUTPUT.ranks* files, and writes
/// the rank launcher (runtime/launcher/RankLauncher.cpp) to OUTPUT. On an error nothing of this
/// build is left behind. Returns the exit code.
int buildRankVariants(const PipelineOptions &opts, std::ostream &err);

} // namespace gradc
