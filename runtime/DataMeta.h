// DataMeta.h: what a data source stores in every checkpoint's metadata (the fitted scaling of a windows source, the vocabulary of a text source), so that --load and --resume reuse it instead of refitting.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "DataSources.h"
#include "Model.h"
#include "Safetensors.h"

namespace gradc::rt {

/// Metadata key of a windows source's scaling: a JSON object
/// {"method": M, "columns": [{"name": N, "offset": O, "scale": S}, ...], "target": {...}}
/// with the numbers in shortest round-trip decimal (exact).
inline constexpr const char *kScalingKey = "gradc.scaling";

/// Metadata key of a text source's vocabulary: its characters, sorted by code point, as one
/// UTF-8 string (index k of the model's inputs is the k-th character).
inline constexpr const char *kVocabularyKey = "gradc.vocabulary";

/// The data-source information of a checkpoint.
struct DataMeta {
  bool hasScaling = false;
  WindowsScaling scaling;
  bool hasVocabulary = false;
  std::vector<uint32_t> vocabulary;
};

/// Adds kScalingKey and kVocabularyKey (those present in `d`) to `meta`.
void encodeDataMeta(const DataMeta &d, SafetensorsMetadata &meta);

/// Reads kScalingKey and kVocabularyKey from a checkpoint's metadata (absent keys leave
/// hasScaling / hasVocabulary false). Throws DataError "PATH: metadata 'KEY': ..." for a
/// malformed value: bad JSON or fields, a method other than minmax/standard/none, an
/// offset or scale that is not finite, a scale that is not positive; a vocabulary that
/// is empty, not valid UTF-8 or not strictly increasing.
DataMeta decodeDataMeta(const SafetensorsMetadata &meta, const std::string &path);

/// Checks that a checkpoint's scaling (read from `path`) fits the windows source the model
/// reads (its method, input columns in order, and target); throws DataError naming `path`
/// and kScalingKey otherwise.
void checkScalingFits(const WindowsScaling &s, const WindowsOptions &o, const std::string &path);

/// Checks that a vocabulary of `size` characters fits the model: if the model has an
/// output [B, T, V] (logits over the vocabulary) then size <= V. `what` names the source
/// of the vocabulary in the message ("PATH: metadata 'gradc.vocabulary'" or the text file).
void checkVocabularyFits(size_t size, const ModelSpec &spec, const std::string &what);

} // namespace gradc::rt
