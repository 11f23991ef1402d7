// Metrics.h: the --metrics CSV file of a training run: one row per epoch (epoch, step, loss,
// val_loss, val_acc, bpc and val_bpc when the run has them, lr, seconds), the whole file rewritten
// atomically after every epoch so that it is complete and readable while the run goes on.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace gradc::rt {

/// One epoch's row of a metrics file.
struct MetricsRow {
  int64_t epoch = 0;   ///< 1-based.
  int64_t step = 0;    ///< Training steps taken in total at the end of the epoch.
  double loss = 0;     ///< Mean training loss of the epoch.
  double valLoss = 0;  ///< Validation loss (a column only when the run validates).
  double valAcc = 0;   ///< Validation accuracy (a column only for a classifier with validation).
  double bpc = 0, valBpc = 0; ///< Bits per character, loss / ln 2 (columns only for a text model).
  double lr = 0;       ///< The learning rate of the epoch's last step.
  double seconds = 0;  ///< Wall-clock seconds of the epoch, validation included.
};

/// Writes a metrics file (see the file comment).
class MetricsWriter {
public:
  /// The file `path` with a val_loss column if `val`, a val_acc column if `acc`, bpc (and
  /// val_bpc with `val`) columns if `bpc`.
  MetricsWriter(std::string path, bool val, bool acc, bool bpc = false);
  /// The header line, without newline: "epoch,step,loss[,val_loss][,val_acc][,bpc][,val_bpc],lr,seconds".
  const std::string &header() const { return header_; }
  /// For a resumed run that continues epoch `epoch`: keeps the rows of the existing file for
  /// earlier epochs when its header is this one (otherwise the file starts afresh).
  void keepRowsBefore(int64_t epoch);
  /// Appends a row and rewrites the file atomically. Throws DataError naming the file.
  void add(const MetricsRow &r);

private:
  std::string path_, header_;
  bool val_, acc_, bpc_;
  std::vector<std::string> lines_; ///< The rows so far, formatted, without newline.
};

} // namespace gradc::rt
