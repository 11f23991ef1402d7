// Onnx.h: exports a compiled model's inference graph with its trained weights as an ONNX model (--emit=onnx).
#pragma once

#include <string>

#include "deploy/Weights.h"
#include "ir/IR.h"
#include "support/Diagnostics.h"

namespace gradc {

/// The ONNX operator set the exporter writes (opset 17 of the default domain, IR version 8).
constexpr int kOnnxOpset = 17;

/// How --emit=onnx writes the graph.
struct OnnxOptions {
  /// The batch axis (the inputs' axis 0, traced through the graph) is the symbolic dim
  /// "batch" instead of the model's B (--onnx-dynamic-batch).
  bool dynamicBatch = false;
};

/// Serialises `m`'s inference graph (after the inference passes) as an ONNX ModelProto into
/// `bytes`: parameters and buffers become initializers holding `w`, the model's inputs and
/// outputs keep their names, a scan becomes an ONNX Scan whose body is the scan's body. An
/// op with no ONNX form (or, with `opts.dynamicBatch`, whose result depends on the batch size)
/// is an error at its model line, reported through `diag` (throws
/// CompileError).
void exportOnnx(const Module &m, const Weights &w, const OnnxOptions &opts, Diagnostics &diag, std::string &bytes);

} // namespace gradc
