// RecurrentCells.h: recognises a scan whose body is PyTorch's plain LSTM or GRU cell, from the body's ops and wiring, so that the ONNX exporter can write it as ONNX's own LSTM or GRU op.
#pragma once

#include <optional>
#include <vector>

#include "ir/IR.h"

namespace gradc {

/// Which cell a recognised scan runs.
enum class CellKind { Lstm, Gru };

/// A scan recognised as one direction of PyTorch's LSTM (gates i, f, g, o; c = f*c + i*g,
/// h = o*tanh(c)) or GRU (gates r, z, n; n = tanh(gi_n + r*gh_n), h = (1-z)*n + z*h) with
/// zero initial state, its input projection x @ transpose(W_ih) hoisted out of the loop.
struct RecurrentCell {
  CellKind kind = CellKind::Lstm;
  const Node *scan = nullptr;
  int64_t hidden = 0;           ///< H.
  int64_t gates = 0;            ///< 4 (LSTM) or 3 (GRU).
  const Value *input = nullptr; ///< The sequence before the projection: [B, T, I] (axis 1) or [T, B, I] (axis 0).
  const Node *wIh = nullptr;    ///< The param/buffer W_ih, [gates*H, I].
  const Node *wHh = nullptr;    ///< The param/buffer W_hh, [gates*H, H].
  const Node *bIh = nullptr;    ///< The param/buffer b_ih, [gates*H], or null when the cell adds none.
  const Node *bHh = nullptr;    ///< The param/buffer b_hh, [gates*H], or null when the cell adds none.
  std::vector<const Node *> projection; ///< The outer transpose and matmul computing the scan's sequence operand.
  bool reverse = false;         ///< The scan runs from the last step to the first.
  int hResult = -1;             ///< The scan's result holding the last h.
  int cResult = -1;             ///< The scan's result holding the last c (LSTM), else -1.
  int seqResult = -1;           ///< The scan's result holding h of every step.
};

/// `scan` as an LSTM or GRU, or nothing when its body, initial state or sequence operand is
/// anything else (BatchNorm or LayerNorm inside the step, another activation, a user cell...).
std::optional<RecurrentCell> matchRecurrentCell(const Node &scan);

} // namespace gradc
