// Safetensors reader and writer (see safetensors.h for the format and the contracts).
#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "base/file.h"

namespace m1 {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host needs byte swapping");

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the reference implementation's limit
constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

// Element size in bytes of a safetensors dtype, 0 when the dtype is unknown.
size_t dtype_size(const std::string& dtype) {
  static const std::pair<const char*, size_t> kSizes[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2},
      {"U16", 2},  {"F16", 2}, {"BF16", 2}, {"I32", 4},    {"U32", 4},     {"F32", 4},
      {"F64", 8},  {"I64", 8}, {"U64", 8}};
  for (const auto& [name, size] : kSizes)
    if (dtype == name) return size;
  return 0;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// numel of SHAPE, false on a negative dim or int64 overflow.
bool checked_numel(const std::vector<int64_t>& shape, int64_t* out) {
  int64_t n = 1;
  for (int64_t dim : shape) {
    if (dim < 0 || __builtin_mul_overflow(n, dim, &n)) return false;
  }
  *out = n;
  return true;
}

// A read-only file descriptor, closed on destruction.
class ReadFile {
 public:
  ReadFile() = default;
  ReadFile(const ReadFile&) = delete;
  ReadFile& operator=(const ReadFile&) = delete;
  ~ReadFile() {
    if (fd_ >= 0) ::close(fd_);
  }

  Status open(const std::string& path) {
    path_ = path;
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) return Status::errorf("{}: cannot open: {}", path, std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return Status::errorf("{}: stat failed: {}", path, std::strerror(errno));
    if (!S_ISREG(st.st_mode)) return Status::errorf("{}: not a regular file", path);
    size_ = uint64_t(st.st_size);
    return Status::ok();
  }
  uint64_t size() const { return size_; }

  // Reads exactly N bytes at OFFSET; what names the data in the error.
  Status pread_exact(void* buf, size_t n, uint64_t offset, const std::string& what) const {
    char* p = static_cast<char*>(buf);
    while (n > 0) {
      ssize_t r = ::pread(fd_, p, n, off_t(offset));
      if (r < 0) {
        if (errno == EINTR) continue;
        return Status::errorf("{}: {}: read at offset {} failed: {}", path_, what, offset,
                              std::strerror(errno));
      }
      if (r == 0)
        return Status::errorf("{}: {}: unexpected end of file at offset {} (file truncated?)", path_,
                              what, offset);
      p += r;
      n -= size_t(r);
      offset += uint64_t(r);
    }
    return Status::ok();
  }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// Parses one header entry; offsets are checked against DATA_SIZE.
Status parse_entry(const std::string& path, const std::string& name, const json& e,
                   uint64_t data_start, uint64_t data_size, TensorInfo* t) {
  auto bad = [&](const std::string& what) {
    return Status::errorf("{}: tensor '{}': {}", path, name, what);
  };
  if (!e.is_object()) return bad(fmt::format("header entry is {}, not an object", e.type_name()));
  auto dt = e.find("dtype");
  auto sh = e.find("shape");
  auto off = e.find("data_offsets");
  if (dt == e.end() || !dt->is_string()) return bad("missing or non-string \"dtype\"");
  if (sh == e.end() || !sh->is_array()) return bad("missing or non-array \"shape\"");
  if (off == e.end() || !off->is_array() || off->size() != 2)
    return bad("\"data_offsets\" must be an array [begin, end]");
  t->name = name;
  t->dtype = dt->get<std::string>();
  const size_t esize = dtype_size(t->dtype);
  if (esize == 0) return bad(fmt::format("unknown dtype '{}'", t->dtype));
  t->shape.clear();
  for (const json& d : *sh) {
    if (!d.is_number_unsigned() || d.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
      return bad(fmt::format("shape {} has an entry that is not a non-negative integer", sh->dump()));
    t->shape.push_back(int64_t(d.get<uint64_t>()));
  }
  for (const json& o : *off)
    if (!o.is_number_unsigned())
      return bad(fmt::format("data_offsets {} must be non-negative integers", off->dump()));
  const uint64_t begin = (*off)[0].get<uint64_t>(), end = (*off)[1].get<uint64_t>();
  if (begin > end) return bad(fmt::format("data_offsets [{}, {}) are reversed", begin, end));
  int64_t numel = 0;
  uint64_t nbytes = 0;
  if (!checked_numel(t->shape, &numel) || __builtin_mul_overflow(uint64_t(numel), esize, &nbytes))
    return bad(fmt::format("shape {} overflows", shape_str(t->shape)));
  if (nbytes != end - begin)
    return bad(fmt::format("shape {} of {} needs {} bytes, data_offsets [{}, {}) hold {}",
                           shape_str(t->shape), t->dtype, nbytes, begin, end, end - begin));
  if (end > data_size)
    return bad(fmt::format("data_offsets [{}, {}) extend past the {} data bytes (file truncated?)",
                           begin, end, data_size));
  t->file = path;
  t->offset = data_start + begin;
  t->nbytes = nbytes;
  return Status::ok();
}

// Reads and validates the header of one .safetensors file.
Result<std::vector<TensorInfo>> read_header(const std::string& path) {
  ReadFile f;
  M1_RETURN_IF_ERROR(f.open(path));
  if (f.size() < 8)
    return Status::errorf("{}: file is {} bytes, shorter than the 8-byte header length", path, f.size());
  unsigned char len_bytes[8];
  M1_RETURN_IF_ERROR(f.pread_exact(len_bytes, 8, 0, "header length"));
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[i];
  if (n > kMaxHeaderBytes)
    return Status::errorf("{}: header length {} exceeds the {} byte limit", path, n, kMaxHeaderBytes);
  if (n > f.size() - 8)
    return Status::errorf("{}: header length {} exceeds the file size {} (file truncated?)", path, n,
                          f.size());
  std::string text(size_t(n), '\0');
  M1_RETURN_IF_ERROR(f.pread_exact(text.data(), text.size(), 8, "header"));
  json h;
  try {
    h = json::parse(text);
  } catch (const json::exception& e) {
    return Status::errorf("{}: header is not valid JSON: {}", path, e.what());
  }
  if (!h.is_object()) return Status::errorf("{}: header is {}, not a JSON object", path, h.type_name());

  const uint64_t data_start = 8 + n, data_size = f.size() - 8 - n;
  std::vector<TensorInfo> out;
  out.reserve(h.size());
  for (const auto& item : h.items()) {
    if (item.key() == "__metadata__") continue;
    TensorInfo t;
    M1_RETURN_IF_ERROR(parse_entry(path, item.key(), item.value(), data_start, data_size, &t));
    out.push_back(std::move(t));
  }
  // No two tensors may share bytes.
  std::vector<const TensorInfo*> by_offset;
  for (const TensorInfo& t : out)
    if (t.nbytes > 0) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorInfo& a = *by_offset[i - 1];
    const TensorInfo& b = *by_offset[i];
    if (a.offset + a.nbytes > b.offset)
      return Status::errorf("{}: tensor '{}': data overlaps tensor '{}'", path, b.name, a.name);
  }
  return out;
}

// A shard name from an index must stay inside the index's directory.
bool safe_shard_name(const std::string& s) {
  if (s.empty() || s.front() == '/') return false;
  for (const auto& part : fs::path(s))
    if (part == "..") return false;
  return true;
}

Result<std::vector<TensorInfo>> read_index(const std::string& index_path) {
  M1_ASSIGN_OR_RETURN(std::string text, read_file(index_path));
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    return Status::errorf("{}: malformed JSON: {}", index_path, e.what());
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    return Status::errorf("{}: expected a JSON object with a \"weight_map\" object", index_path);
  // shard file → tensors the index maps to it
  std::map<std::string, std::vector<std::string>> by_shard;
  for (const auto& item : j["weight_map"].items()) {
    if (!item.value().is_string() || !safe_shard_name(item.value().get<std::string>()))
      return Status::errorf("{}: tensor '{}': shard {} is not a file name inside the directory",
                            index_path, item.key(), item.value().dump());
    by_shard[item.value().get<std::string>()].push_back(item.key());
  }
  const std::string dir = parent_dir(index_path);
  std::vector<TensorInfo> out;
  for (const auto& [shard, names] : by_shard) {
    const std::string shard_path = path_join(dir, shard);
    if (!path_exists(shard_path))
      return Status::errorf("{}: shard '{}' (holding tensor '{}') not found at {}", index_path, shard,
                            names.front(), shard_path);
    M1_ASSIGN_OR_RETURN(std::vector<TensorInfo> held, read_header(shard_path));
    std::map<std::string, const TensorInfo*> by_name;
    for (const TensorInfo& t : held) by_name[t.name] = &t;
    for (const std::string& name : names) {
      auto it = by_name.find(name);
      if (it == by_name.end())
        return Status::errorf("{}: tensor '{}' is mapped to shard '{}', but {} does not hold it",
                              index_path, name, shard, shard_path);
      out.push_back(*it->second);
    }
  }
  return out;
}

}  // namespace

float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(uint32_t(h) << 16); }

uint16_t f32_to_bf16(float f) {
  uint32_t bits = std::bit_cast<uint32_t>(f);
  if (std::isnan(f)) return uint16_t((bits >> 16) | 0x0040);  // keep sign and quiet bit
  bits += 0x7FFFu + ((bits >> 16) & 1u);                       // round half to even
  return uint16_t(bits >> 16);
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
  if (exp == 0) {  // zero or subnormal: mant · 2^−24, exact in fp32
    float v = std::ldexp(float(mant), -24);
    return sign ? -v : v;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7F800000u | (mant << 13));  // inf, NaN
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Result<SafetensorsReader> SafetensorsReader::open(const std::string& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) return Status::errorf("{}: no such file or directory", path);
  Result<std::vector<TensorInfo>> tensors = Status::error("unset");
  if (fs::is_directory(st)) {
    const std::string single = path_join(path, kSingleFile), index = path_join(path, kIndexFile);
    if (path_exists(single)) {
      tensors = read_header(single);
    } else if (path_exists(index)) {
      tensors = read_index(index);
    } else {
      return Status::errorf("{}: directory holds neither {} nor {}", path, kSingleFile, kIndexFile);
    }
  } else if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0) {
    tensors = read_index(path);
  } else {
    tensors = read_header(path);
  }
  if (!tensors.is_ok()) return tensors.status();
  SafetensorsReader r;
  r.path_ = path;
  r.tensors_ = std::move(tensors).value();
  std::sort(r.tensors_.begin(), r.tensors_.end(),
            [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
  return r;
}

const TensorInfo* SafetensorsReader::find(const std::string& name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorInfo& t, const std::string& n) { return t.name < n; });
  return (it != tensors_.end() && it->name == name) ? &*it : nullptr;
}

Status SafetensorsReader::read_f32(const std::string& name, const std::vector<int64_t>& expected_shape,
                                   float* out) const {
  int64_t n = 0;
  if (!checked_numel(expected_shape, &n))
    return Status::errorf("{}: tensor '{}': invalid expected shape {}", path_, name, shape_str(expected_shape));
  return read_f32_range(name, expected_shape, 0, n, out);
}

Status SafetensorsReader::read_f32_range(const std::string& name, const std::vector<int64_t>& expected_shape,
                                         int64_t begin, int64_t count, float* out) const {
  const TensorInfo* t = find(name);
  if (t == nullptr) return Status::errorf("{}: tensor '{}' not found", path_, name);
  if (t->shape != expected_shape)
    return Status::errorf("{}: tensor '{}': shape {} does not match the expected {}", t->file, name,
                          shape_str(t->shape), shape_str(expected_shape));
  if (t->dtype != "F32" && t->dtype != "BF16" && t->dtype != "F16")
    return Status::errorf("{}: tensor '{}': dtype {} is not supported (F32, BF16 and F16 are read)",
                          t->file, name, t->dtype);
  if (begin < 0 || count < 0 || begin > t->numel() || count > t->numel() - begin)
    return Status::errorf("{}: tensor '{}': elements [{}, {}) are outside its {}", t->file, name, begin,
                          begin + count, t->numel());
  ReadFile f;
  M1_RETURN_IF_ERROR(f.open(t->file));
  const std::string what = "tensor '" + name + "'";
  const size_t esize = t->dtype == "F32" ? 4 : 2;
  const uint64_t start = t->offset + uint64_t(begin) * esize;
  const size_t n = size_t(count);
  constexpr size_t kChunk = size_t(1) << 20;  // elements per read
  if (t->dtype == "F32") {
    for (size_t done = 0; done < n;) {
      const size_t m = std::min(kChunk * 4, n - done);
      M1_RETURN_IF_ERROR(f.pread_exact(out + done, m * 4, start + done * 4, what));
      done += m;
    }
    return Status::ok();
  }
  const bool is_bf16 = t->dtype == "BF16";
  std::vector<uint16_t> buf(std::min(kChunk, n));
  for (size_t done = 0; done < n;) {
    const size_t m = std::min(kChunk, n - done);
    M1_RETURN_IF_ERROR(f.pread_exact(buf.data(), m * 2, start + done * 2, what));
    if (is_bf16) {
      for (size_t i = 0; i < m; ++i) out[done + i] = bf16_to_f32(buf[i]);
    } else {
      for (size_t i = 0; i < m; ++i) out[done + i] = f16_to_f32(buf[i]);
    }
    done += m;
  }
  return Status::ok();
}

namespace {

// The header bytes of a safetensors file (length prefix included, padded so data starts 8-byte
// aligned) for TENSORS in DTYPE; *data_bytes = the data buffer's size.
Result<std::string> make_header(const std::string& path, const std::vector<TensorDecl>& tensors,
                                const std::string& dtype, uint64_t* data_bytes) {
  if (dtype != "F32" && dtype != "BF16")
    return Status::errorf("{}: cannot write dtype '{}' (F32 or BF16)", path, dtype);
  const size_t esize = dtype_size(dtype);
  nlohmann::ordered_json header;
  header["__metadata__"] = {{"format", "pt"}};
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const TensorDecl& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__")
      return Status::errorf("{}: invalid tensor name '{}'", path, t.name);
    if (!names.insert(t.name).second)
      return Status::errorf("{}: tensor '{}' given twice", path, t.name);
    int64_t numel = 0;
    if (!checked_numel(t.shape, &numel))
      return Status::errorf("{}: tensor '{}': invalid shape {}", path, t.name, shape_str(t.shape));
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(uint64_t(numel), esize, &nbytes) || __builtin_add_overflow(offset, nbytes, &nbytes))
      return Status::errorf("{}: tensor '{}': shape {} overflows", path, t.name, shape_str(t.shape));
    header[t.name] = {{"dtype", dtype}, {"shape", t.shape}, {"data_offsets", {offset, nbytes}}};
    offset = nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-byte aligned
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(char((uint64_t(text.size()) >> (8 * i)) & 0xFF));
  *data_bytes = offset;
  return out + text;
}

// Appends N fp32 values to OUT as DTYPE ("F32" or "BF16") bytes.
void encode(const float* data, size_t n, const std::string& dtype, std::string* out) {
  if (dtype == "F32") {
    out->append(reinterpret_cast<const char*>(data), n * 4);
    return;
  }
  for (size_t i = 0; i < n; ++i) {
    const uint16_t h = f32_to_bf16(data[i]);
    out->push_back(char(h & 0xFF));
    out->push_back(char(h >> 8));
  }
}

}  // namespace

Status write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                         const std::string& dtype) {
  std::vector<TensorDecl> decls;
  decls.reserve(tensors.size());
  for (const TensorToWrite& t : tensors) decls.push_back({t.name, t.shape});
  uint64_t data_bytes = 0;
  M1_ASSIGN_OR_RETURN(std::string file, make_header(path, decls, dtype, &data_bytes));
  file.reserve(file.size() + size_t(data_bytes));
  for (const TensorToWrite& t : tensors) {
    int64_t numel = 0;
    checked_numel(t.shape, &numel);
    if (numel == 0) continue;
    if (t.data == nullptr) return Status::errorf("{}: tensor '{}': no data", path, t.name);
    encode(t.data, size_t(numel), dtype, &file);
  }
  return write_file(path, file);
}

Result<SafetensorsStreamWriter> SafetensorsStreamWriter::create(const std::string& path,
                                                                const std::vector<TensorDecl>& tensors,
                                                                const std::string& dtype) {
  SafetensorsStreamWriter w;
  M1_ASSIGN_OR_RETURN(std::string header, make_header(path, tensors, dtype, &w.total_));
  w.path_ = path;
  w.dtype_ = dtype;
  w.fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (w.fd_ < 0) return Status::errorf("{}: cannot create: {}", path, std::strerror(errno));
  M1_RETURN_IF_ERROR(w.write_all(header.data(), header.size()));
  return w;
}

SafetensorsStreamWriter::SafetensorsStreamWriter(SafetensorsStreamWriter&& o) noexcept
    : path_(std::move(o.path_)), dtype_(std::move(o.dtype_)), fd_(o.fd_), total_(o.total_), written_(o.written_) {
  o.fd_ = -1;
}

SafetensorsStreamWriter::~SafetensorsStreamWriter() {
  if (fd_ >= 0) ::close(fd_);
}

Status SafetensorsStreamWriter::write_all(const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t r = ::write(fd_, c, n);
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::errorf("{}: write failed: {}", path_, std::strerror(errno));
    }
    c += r;
    n -= size_t(r);
  }
  return Status::ok();
}

Status SafetensorsStreamWriter::append(const float* data, size_t n) {
  if (fd_ < 0) return Status::errorf("{}: append after finish", path_);
  const uint64_t bytes = uint64_t(n) * dtype_size(dtype_);
  if (bytes > total_ - written_)
    return Status::errorf("{}: {} more bytes than the {} declared", path_, bytes - (total_ - written_), total_);
  std::string enc;
  constexpr size_t kChunk = size_t(1) << 20;
  for (size_t done = 0; done < n;) {
    const size_t m = std::min(kChunk, n - done);
    enc.clear();
    encode(data + done, m, dtype_, &enc);
    M1_RETURN_IF_ERROR(write_all(enc.data(), enc.size()));
    done += m;
  }
  written_ += bytes;
  return Status::ok();
}

Status SafetensorsStreamWriter::finish() {
  if (fd_ < 0) return Status::errorf("{}: finished twice", path_);
  if (written_ != total_)
    return Status::errorf("{}: {} of the {} declared data bytes were written", path_, written_, total_);
  const int fd = fd_;
  fd_ = -1;
  if (::fsync(fd) != 0) {
    const int e = errno;
    ::close(fd);
    return Status::errorf("{}: fsync failed: {}", path_, std::strerror(e));
  }
  if (::close(fd) != 0) return Status::errorf("{}: close failed: {}", path_, std::strerror(errno));
  return Status::ok();
}

}  // namespace m1
