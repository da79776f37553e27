// Checkpoint files: named fp32 tensors plus an opaque metadata string (the trainer stores JSON
// there), written atomically (FILE.tmp, fsync, rename), so a kill at any moment leaves either the
// previous complete checkpoint or the new one, never a torn file.
//
// Layout (little-endian): "LSBCKPT1", u64 metadata bytes, metadata, u64 tensor count, then per
// tensor: u64 name bytes, name, u64 rank, rank x i64 dims, the floats; last a u64 FNV-1a checksum
// of everything before it. A bad magic, a short file or a wrong checksum is an InputError naming
// the file. Tensors on the GPU go through the host.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "nn/tensor.hpp"

namespace lsb {

struct CheckpointEntry {
  std::string name;
  Tensor* tensor;
};

void save_checkpoint(const std::string& path, const std::string& metadata, const std::vector<CheckpointEntry>& tensors);

// Reads the metadata only (cheap: the tensors are skipped, the checksum still verified).
std::string read_checkpoint_metadata(const std::string& path);

// Loads into the given tensors: every name must be present in the file with the same shape
// (InputError naming the file and the tensor otherwise). Returns the metadata.
std::string load_checkpoint(const std::string& path, const std::vector<CheckpointEntry>& tensors);

}  // namespace lsb
