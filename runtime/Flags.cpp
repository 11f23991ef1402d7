// Flags.cpp: the executable's flags as one table (name, value placeholder, where the value is stored, what it must be, help text) from which both parseArgs and the --help page (usageText) are generated.
#include <cmath>
#include <charconv>
#include <cstdint>
#include <limits>
#include <optional>
#include <type_traits>
#include <variant>

#include <fmt/format.h>

#include "Driver.h"
#include "DriverInternal.h"

namespace gradc::rt {

using namespace detail;

namespace {

constexpr int64_t kBig = std::numeric_limits<int64_t>::max();
constexpr int64_t kSmall = std::numeric_limits<int64_t>::min();

/// Where a flag's value goes in DriverOptions; the member's type says how the value is read:
/// bool: a switch (no value); std::string: a file name (non-empty); optional<int64_t> and
/// optional<int>: an integer in [min, max]; optional<double>: a finite number >= 0 (> 0
/// when min is 1).
using Target = std::variant<bool DriverOptions::*, std::string DriverOptions::*, std::optional<int64_t> DriverOptions::*,
                            std::optional<int> DriverOptions::*, std::optional<double> DriverOptions::*>;

/// One flag of the table.
struct Flag {
  const char *name;    ///< "--epochs".
  const char *alias;   ///< Another spelling ("-h"), or "".
  const char *arg;     ///< Placeholder of the value in --help ("N"); "" for a switch.
  Target target;       ///< Where the value is stored.
  const char *expects; ///< For numbers: what the value must be, in messages.
  int64_t min, max;    ///< For numbers: the range (see Target).
  /// The --help text; lines after the first are indented under it. Fields replaced by
  /// usageText: {epochs} {lr} {seed} {threads} {checked} {precision}. "" hides a testing flag.
  const char *help;
};

// clang-format off
/// Every flag, in --help order.
const Flag kFlags[] = {
  {"--epochs", "", "N", &DriverOptions::epochs, "a non-negative integer", 0, kBig,
   "number of epochs (default {epochs})"},
  {"--lr", "", "X", &DriverOptions::lr, "a non-negative number", 0, 0,
   "learning rate (default {lr})"},
  {"--seed", "", "N", &DriverOptions::seed, "an integer", kSmall, kBig,
   "seed of initialisation, shuffling and dropout (default {seed})"},
  {"--batch-limit", "", "N", &DriverOptions::batchLimit, "a non-negative integer", 0, kBig,
   "stop after N training steps in total"},
  {"--data", "", "PATH", &DriverOptions::data, "", 0, 0,
   "data: a .safetensors file with a tensor per input and target\n"
   "(leading axis N), or a .csv file for a windows data source"},
  {"--no-shuffle", "", "", &DriverOptions::noShuffle, "", 0, 0,
   "take batches in file order (default: shuffled with the seed)"},
  {"--load", "", "CKPT", &DriverOptions::load, "", 0, 0,
   "read parameters and buffers (.safetensors) before running"},
  {"--save", "", "CKPT", &DriverOptions::save, "", 0, 0,
   "write parameters, buffers and optimizer state (.safetensors)"},
  {"--predict", "", "", &DriverOptions::predict, "", 0, 0,
   "inference on the data; the outputs as CSV on stdout"},
  {"--out", "", "FILE", &DriverOptions::out, "", 0, 0,
   "with --predict: write the outputs to FILE (.safetensors, else CSV)"},
  {"--generate", "", "N", &DriverOptions::generate, "a positive integer", 1, kBig,
   "sample N characters from a text model, one step at a time, and print them\n"
   "(after training; with --load, from that checkpoint without training)"},
  {"--prompt", "", "S", &DriverOptions::prompt, "", 0, 0,
   "with --generate: the text to continue (printed first)"},
  {"--temperature", "", "X", &DriverOptions::temperature, "a non-negative number", 0, 0,
   "with --generate: sample from softmax(logits / X) (default 1; 0 takes\n"
   "the most likely character)"},
  {"--gradcheck", "", "", &DriverOptions::gradcheck, "", 0, 0,
   "compare every parameter's gradient with finite differences"},
  {"--gradcheck-tol", "", "X", &DriverOptions::gradcheckTol, "a positive number", 1, 0,
   "gradcheck tolerance (default 1e-6 in double, 1e-2 in float)"},
  {"--threads", "", "N", &DriverOptions::threads, "a positive integer", 1, 1 << 16,
   "worker threads (default: the faster of 1 and {threads}, timed over the first\n"
   "training steps; inference uses {threads})"},
  {"--precision", "", "P", &DriverOptions::precision, "", 0, 0,
   "f32, or bf16: matrix multiplies on bf16 operands with fp32 sums, where the\n"
   "CPU has AVX512-BF16 (default: the train block's, {precision})"},
  {"--timing", "", "", &DriverOptions::timing, "", 0, 0,
   "at the end, on stderr: seconds from exec to the end of the first step, ms per\n"
   "step, seconds from exec to the start of the first step (ready_s)"},
  {"--resume", "", "CKPT", &DriverOptions::resume, "", 0, 0,
   "continue the run that wrote CKPT (--save, --checkpoint-every or an\n"
   "interruption) exactly where it stopped; --epochs counts from its start"},
  {"--checkpoint-every", "", "N", &DriverOptions::checkpointEvery, "a positive integer", 1, kBig,
   "with --save: also write a resumable checkpoint every N steps"},
  {"--check-finite", "", "", &DriverOptions::checkFinite, "", 0, 0,
   "stop at the first NaN or Inf of any step (always on for the first {checked})"},
  {"--metrics", "", "FILE", &DriverOptions::metrics, "", 0, 0,
   "write one CSV row per epoch to FILE (epoch, step, loss, val_loss, val_acc,\n"
   "lr, seconds), rewritten atomically after each epoch"},
  {"--quiet", "", "", &DriverOptions::quiet, "", 0, 0,
   "no progress bar; one line per epoch: epoch E loss L [val_loss V]\n"
   "[lr X, when a schedule varies it]"},
  {"--help", "-h", "", &DriverOptions::help, "", 0, 0,
   "show this help"},
  {"--interrupt-after-steps", "", "N", &DriverOptions::interruptAfter, "a positive integer", 1, kBig,
   ""}, // testing: SIGINT to itself after step N
};
// clang-format on

/// The table entry spelled `name` (or its alias), or nullptr.
const Flag *findFlag(const std::string &name) {
  for (const Flag &f : kFlags)
    if (name == f.name || (*f.alias && name == f.alias)) return &f;
  return nullptr;
}

/// The integer value `v` of flag `f`, in [f.min, f.max]; throws UsageError.
int64_t parseIntValue(const Flag &f, const std::string &v) {
  int64_t out = 0;
  const char *b = v.data(), *e = v.data() + v.size();
  auto r = std::from_chars(b, e, out);
  if (v.empty() || r.ec == std::errc::invalid_argument || r.ptr != e)
    throw UsageError(fmt::format("option '{}' expects {}, found {}", f.name, f.expects, quoted(v)));
  if (r.ec == std::errc::result_out_of_range || out < f.min || out > f.max)
    throw UsageError(fmt::format("option '{}' expects {}, found {} (out of range)", f.name, f.expects, quoted(v)));
  return out;
}

/// The number value `v` of flag `f`: finite, >= 0 (> 0 when f.min is 1); throws UsageError.
double parseDoubleValue(const Flag &f, const std::string &v) {
  double out = 0;
  const char *b = v.data(), *e = v.data() + v.size();
  auto r = std::from_chars(b, e, out, std::chars_format::general);
  if (v.empty() || r.ec != std::errc() || r.ptr != e || !std::isfinite(out) || out < 0 || (f.min > 0 && out == 0))
    throw UsageError(fmt::format("option '{}' expects {}, found {}", f.name, f.expects, quoted(v)));
  return out;
}

/// Stores one occurrence of flag `f` (the argument `a`; `inlineValue` is its text after '=',
/// if any) into `o`, taking the value from args[i + 1] when it is not inline.
void apply(const Flag &f, const std::string &a, const std::optional<std::string> &inlineValue,
           const std::vector<std::string> &args, size_t &i, DriverOptions &o) {
  const std::string name = a.substr(0, a.find('='));
  auto value = [&]() -> std::string {
    if (inlineValue) return *inlineValue;
    if (i + 1 >= args.size()) throw UsageError(fmt::format("option '{}' needs a value", name));
    return args[++i];
  };
  std::visit(
      [&](auto member) {
        using T = std::decay_t<decltype(o.*member)>;
        if constexpr (std::is_same_v<T, bool>) {
          if (inlineValue) throw UsageError(fmt::format("option '{}' takes no value, found {}", name, quoted(a)));
          o.*member = true;
        } else if constexpr (std::is_same_v<T, std::string>) {
          std::string v = value();
          if (v.empty())
            throw UsageError(fmt::format("option '{}' needs {}, found an empty value", name,
                                         member == &DriverOptions::prompt      ? "a text"
                                         : member == &DriverOptions::precision ? "f32 or bf16"
                                                                               : "a file name"));
          o.*member = std::move(v);
        } else if constexpr (std::is_same_v<T, std::optional<double>>) {
          o.*member = parseDoubleValue(f, value());
        } else {
          o.*member = static_cast<typename T::value_type>(parseIntValue(f, value()));
        }
      },
      f.target);
}

} // namespace

std::vector<FlagInfo> driverFlags() {
  std::vector<FlagInfo> out;
  for (const Flag &f : kFlags) out.push_back({f.name, f.alias, f.arg, !*f.help});
  return out;
}

DriverOptions parseArgs(const std::vector<std::string> &args) {
  DriverOptions o;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string &a = args[i];
    const size_t eq = a.compare(0, 2, "--") == 0 ? a.find('=') : std::string::npos;
    const std::string name = a.substr(0, eq);
    const Flag *f = findFlag(name);
    if (!f) {
      if (!a.empty() && a[0] == '-') throw UsageError("unknown option " + quoted(name));
      throw UsageError("unexpected argument " + quoted(a) + " (options start with '--')");
    }
    std::optional<std::string> inlineValue;
    if (eq != std::string::npos) inlineValue = a.substr(eq + 1);
    apply(*f, a, inlineValue, args, i, o);
  }
  if (o.help) return o;
  if (!o.precision.empty() && o.precision != "f32" && o.precision != "bf16")
    throw UsageError(fmt::format("option '--precision' expects f32 or bf16, found {}", quoted(o.precision)));
  if (!o.out.empty() && !o.predict) throw UsageError("option '--out' needs '--predict'");
  if (o.predict && o.gradcheck) throw UsageError("options '--predict' and '--gradcheck' cannot be combined");
  if (o.gradcheck && !o.save.empty()) throw UsageError("options '--gradcheck' and '--save' cannot be combined");
  if (o.gradcheckTol && !o.gradcheck) throw UsageError("option '--gradcheck-tol' needs '--gradcheck'");
  if (!o.resume.empty() && !o.load.empty()) throw UsageError("options '--resume' and '--load' cannot be combined");
  if (!o.resume.empty() && (o.predict || o.gradcheck))
    throw UsageError(fmt::format("option '--resume' continues training; it cannot be combined with '{}' (use '--load')",
                                 o.predict ? "--predict" : "--gradcheck"));
  if (!o.prompt.empty() && !o.generate) throw UsageError("option '--prompt' needs '--generate'");
  if (o.temperature && !o.generate) throw UsageError("option '--temperature' needs '--generate'");
  if (o.generate && (o.predict || o.gradcheck))
    throw UsageError(fmt::format("options '--generate' and '{}' cannot be combined", o.predict ? "--predict" : "--gradcheck"));
  if (o.checkpointEvery && o.save.empty()) throw UsageError("option '--checkpoint-every' needs '--save'");
  if (!o.metrics.empty() && (o.predict || o.gradcheck))
    throw UsageError(fmt::format("option '--metrics' records training; it cannot be combined with '{}'",
                                 o.predict ? "--predict" : "--gradcheck"));
  return o;
}

std::string usageText(const std::string &exe, const ModelSpec &spec) {
  const TrainSpec &t = spec.train;
  const std::string data = t.dataKind.empty() ? std::string("none") : t.dataKind + " " + t.dataPath;
  std::string s = fmt::format("usage: {} [options]\nTrains model {} (batch {}, data: {}).\n\n", exe, spec.name,
                              spec.batch, data);
  constexpr size_t kColumn = 20; // help texts start at column 2 + kColumn
  for (const Flag &f : kFlags) {
    if (!*f.help) continue;
    std::string label = *f.arg ? fmt::format("{} {}", f.name, f.arg) : std::string(f.name);
    const std::string help = fmt::format(fmt::runtime(f.help), fmt::arg("epochs", t.epochs), fmt::arg("lr", t.lr),
                                         fmt::arg("seed", t.seed), fmt::arg("threads", defaultThreads()),
                                         fmt::arg("precision", t.precision),
                                         fmt::arg("checked", kAlwaysCheckedSteps));
    s += "  " + label;
    if (label.size() + 1 > kColumn) s += "\n" + std::string(kColumn + 2, ' ');
    else s += std::string(kColumn - label.size(), ' ');
    for (char c : help) s += c == '\n' ? "\n" + std::string(kColumn + 2, ' ') : std::string(1, c);
    s += '\n';
  }
  s += "Options also take the form --option=value. Ctrl-C (SIGINT) or SIGTERM stops training between\n"
       "steps and saves a resumable checkpoint to --save (or " +
       interruptedCheckpointPath(spec) + ").\n";
  return s;
}

} // namespace gradc::rt
