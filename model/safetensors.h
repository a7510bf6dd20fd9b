// Safetensors checkpoints (https://github.com/huggingface/safetensors): reading F32, BF16 and F16
// tensors into fp32, and writing F32 or BF16.
//
// File layout: u64 little-endian N, then N bytes of JSON header
//   {"__metadata__": {"format": "pt"}, NAME: {"dtype": "BF16", "shape": [..], "data_offsets": [b, e]}, ...}
// (padded with spaces to a multiple of 8), then the data buffer; [b, e) is relative to the buffer.
//
// SafetensorsReader::open validates every header it touches up front (size limits, JSON shape,
// known dtype, numel·dtype size == e − b, offsets inside the file, no overlaps) so a corrupt or
// truncated checkpoint fails at open with an error naming the file and the tensor; it never
// crashes. Tensor data is read on demand with positional reads (the files are not held in memory).
// Errors name the file that holds the tensor and the tensor.
//
// Ownership and thread safety: a reader is a plain value (the tensor table); it keeps no file open.
// Const methods may be called concurrently. Host byte order must be little-endian (checked at
// compile time).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/status.h"

namespace m1 {

struct TensorInfo {
  std::string name;
  std::string dtype;           // safetensors dtype string: "F32", "BF16", "F16", "I64", ...
  std::vector<int64_t> shape;  // row-major; [] is a scalar
  std::string file;            // path of the file that holds the data
  uint64_t offset = 0;         // absolute byte offset of the data in `file`
  uint64_t nbytes = 0;         // numel() · dtype size
  int64_t numel() const;
};

class SafetensorsReader {
 public:
  // PATH is a .safetensors file, a model.safetensors.index.json, or a model directory holding
  // model.safetensors (preferred) or model.safetensors.index.json ("weight_map": name → shard
  // file, relative to the index's directory).
  static Result<SafetensorsReader> open(const std::string& path);

  const std::string& path() const { return path_; }  // as given to open()
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // sorted by name
  const TensorInfo* find(const std::string& name) const;  // nullptr when absent
  bool contains(const std::string& name) const { return find(name) != nullptr; }

  // Reads tensor NAME, converting F32/BF16/F16 to fp32 (F16 subnormals, ±inf and NaN included).
  // Errors: tensor absent, shape != expected_shape, unsupported dtype, short read.
  // REQUIRES: out holds numel(expected_shape) floats.
  Status read_f32(const std::string& name, const std::vector<int64_t>& expected_shape,
                  float* out) const;
  // Reads elements [begin, begin + count) of tensor NAME (row-major) the same way, in chunks (no
  // more than a few MiB of staging however large COUNT is).
  // Errors: as read_f32, and a range outside the tensor. REQUIRES: out holds count floats.
  Status read_f32_range(const std::string& name, const std::vector<int64_t>& expected_shape,
                        int64_t begin, int64_t count, float* out) const;

 private:
  std::string path_;
  std::vector<TensorInfo> tensors_;
};

struct TensorToWrite {
  std::string name;
  std::vector<int64_t> shape;
  const float* data = nullptr;  // numel(shape) fp32 values, owned by the caller
};

// Writes one safetensors file holding TENSORS in the given order, converted to DTYPE ("F32", or
// "BF16" rounded to nearest even), with "__metadata__": {"format": "pt"}. The file is built in
// memory and written with write_file (not atomic: write inside a temp dir that is renamed).
// Errors: unknown dtype, empty or duplicate names, negative dims, null data.
Status write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                         const std::string& dtype);

// Writes one safetensors file whose tensors are declared up front and whose data arrives in
// pieces, so no tensor (let alone the file) needs to be in memory at once. The header is written by
// create(); append() takes the next elements in declaration order (fp32, converted to DTYPE);
// finish() checks that every declared byte arrived, fsyncs and closes. Declarations are checked
// like write_safetensors' tensors. Not atomic: write inside a temp dir that is renamed.
// Destroying an unfinished writer closes the file, leaving it incomplete.
struct TensorDecl {
  std::string name;
  std::vector<int64_t> shape;
};
class SafetensorsStreamWriter {
 public:
  static Result<SafetensorsStreamWriter> create(const std::string& path, const std::vector<TensorDecl>& tensors,
                                                const std::string& dtype);
  SafetensorsStreamWriter(SafetensorsStreamWriter&& o) noexcept;
  SafetensorsStreamWriter& operator=(SafetensorsStreamWriter&&) = delete;
  SafetensorsStreamWriter(const SafetensorsStreamWriter&) = delete;
  ~SafetensorsStreamWriter();
  Status append(const float* data, size_t n);
  Status finish();
  uint64_t data_bytes() const { return total_; }  // the data buffer's size (header excluded)

 private:
  SafetensorsStreamWriter() = default;
  Status write_all(const void* p, size_t n);
  std::string path_, dtype_;
  int fd_ = -1;
  uint64_t total_ = 0, written_ = 0;
};

// Element conversions used by the reader and writer.
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);  // round to nearest even; NaN stays a (quiet) NaN
float f16_to_f32(uint16_t h);   // IEEE binary16, subnormals, ±inf and NaN included

}  // namespace m1
