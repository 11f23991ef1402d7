// gradc.cpp: the command line of the gradc compiler (README.md and docs/ir.md describe it).
#include <cstdlib>
#include <cstring>
#include <iostream>

#include <boost/program_options.hpp>
#include <fmt/format.h>

#include "driver/Options.h"
#include "driver/Pipeline.h"
#include "driver/RankVariants.h"
#include "driver/Run.h"

namespace po = boost::program_options;

int main(int argc, char **argv) {
  try {
    gradc::PipelineOptions opts;
    bool runMode = argc > 1 && std::strcmp(argv[1], "run") == 0;
    std::vector<std::string> printAfter, disabled;
    int opt = 2;
    bool interpret = false;
    std::string fpContract;
    std::string ranksText;
    po::options_description desc("usage: gradc MODEL.model [-o EXE | --emit=KIND [-o FILE]]\n"
                                 "       gradc run MODEL.model [-- EXE-ARGS]\noptions");
    desc.add_options()
        ("help,h", "print this help")
        ("version", "print the version")
        ("list-passes", "print the passes in pipeline order, with the --emit stop points")
        ("output,o", po::value(&opts.output), "output file")
        ("emit", po::value(&opts.emit), "stop at a stage: ast, graph, grad-graph, opt-graph, dot, memory-plan, cpp, llvm, obj; or deploy: onnx, lib (with --weights)")
        ("weights", po::value(&opts.weights), "--emit=onnx|lib: the trained checkpoint (safetensors) whose weights are embedded")
        ("onnx-dynamic-batch", po::bool_switch(&opts.onnxDynamicBatch), "--emit=onnx: the batch axis is the symbolic dim 'batch' (any number of rows per run) instead of the model's B")
        ("backend", po::value(&opts.backend), "code generator for -o EXE: llvm (default) or cpp")
        ("print-after", po::value(&printAfter)->composing(), "print the IR after PASS (repeatable)")
        ("print-after-all", po::bool_switch(&opts.printAfterAll), "print the IR after every pass")
        ("disable-pass", po::value(&disabled)->composing(), "do not run PASS (repeatable)")
        ("opt,O", po::value(&opt)->default_value(2), "optimisation level (0 disables optional passes)")
        ("target-cpu", po::value(&opts.targetCpu), "CPU of the generated code (-march), default native")
        ("fp-contract", po::value(&fpContract)->default_value("off"), "LLVM backend: on lets a*b+c become one FMA (rounds differently from the C++ backend)")
        ("ranks", po::value(&ranksText)->default_value("1"), "compile for mpirun -np N: each of N ranks computes B / N rows of every batch; a list N1,N2,... with -o EXE: EXE runs under any of them (docs/distributed.md)")
        ("verbose,v", po::bool_switch(&opts.verbose), "print the C++ compiler's or linker's command line (gradc run: the JIT's compile time)")
        ("interpret", po::bool_switch(&interpret), "gradc run: execute with the double-precision reference interpreter");
    po::options_description hidden;
    hidden.add_options()("input", po::value<std::vector<std::string>>(), "model file");
    po::options_description all;
    all.add(desc).add(hidden);
    po::positional_options_description pos;
    pos.add("input", -1);
    po::variables_map vm;
    std::vector<std::string> args(argv + 1 + (runMode ? 1 : 0), argv + argc);
    auto dashdash = std::find(args.begin(), args.end(), "--");
    std::vector<std::string> own(args.begin(), dashdash);
    po::store(po::command_line_parser(own).options(all).positional(pos).run(), vm);
    po::notify(vm);
    if (vm.count("help")) {
      std::cout << desc << "\n";
      return 0;
    }
    if (vm.count("version")) {
      std::cout << "gradc 0.1 (a compiler for training neural networks)\n";
      return 0;
    }
    if (vm.count("list-passes")) {
      gradc::listPasses(std::cout);
      return 0;
    }
    auto inputs = vm.count("input") ? vm["input"].as<std::vector<std::string>>() : std::vector<std::string>{};
    if (inputs.size() != 1) {
      std::cerr << (inputs.empty() ? "gradc: error: no model file given\n" : "gradc: error: give one model file\n")
                << desc << "\n";
      return 1;
    }
    opts.input = inputs[0];
    opts.printAfter = printAfter;
    opts.disabled = disabled;
    opts.optLevel = opt;
    if (fpContract != "on" && fpContract != "off") {
      std::cerr << "gradc: error: --fp-contract must be on or off, not '" << fpContract << "'\n";
      return 1;
    }
    opts.fpContract = fpContract == "on";
    if (!gradc::parseRanks(ranksText, opts, std::cerr))
      return 1;
    // GRADC_BACKEND chooses the backend of -o EXE when --backend does not (the sanitizer
    // test run sets cpp, so the generated code it runs is instrumented).
    if (const char *env = std::getenv("GRADC_BACKEND"); env && *env && !vm.count("backend") && !runMode)
      opts.backend = env;
    if (runMode) {
      if (!opts.rankVariants.empty()) {
        std::cerr << "gradc: error: 'gradc run' takes one --ranks N; a list of rank counts is for -o EXE\n";
        return 1;
      }
      if (vm.count("backend") && opts.backend != "llvm") {
        std::cerr << "gradc: error: 'gradc run' compiles with the LLVM JIT (or --interpret); --backend=" << opts.backend
                  << " applies to -o EXE\n";
        return 1;
      }
      return gradc::runModel(opts, std::vector<std::string>(dashdash == args.end() ? dashdash : dashdash + 1, args.end()),
                             interpret, std::cerr);
    }
    if (opts.emit.empty() && opts.output.empty()) {
      std::cerr << "gradc: error: nothing to do: give -o EXE or --emit=KIND\n";
      return 1;
    }
    if (!opts.rankVariants.empty())
      return gradc::buildRankVariants(opts, std::cerr);
    return gradc::runPipeline(opts, std::cerr);
  } catch (const po::error &e) {
    std::cerr << "gradc: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception &e) {
    std::cerr << "gradc: internal error: " << e.what() << "\n";
    return 2;
  }
}
