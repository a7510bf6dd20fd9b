// Model directories: DIR/config.json + DIR/model.safetensors (or shards via the index), in the
// release layout or transformers' (model/hf_convert.h): each parameter is found under either name.
#include <cmath>
#include <set>

#include "base/file.h"
#include "base/log.h"
#include "model/hf_convert.h"
#include "model/model.h"
#include "model/safetensors.h"

namespace m1 {

namespace {

// Weights and moments enter as numbers like any input: NaN or an infinity is refused by name.
Status check_finite(const std::string& dir, const std::string& name, const float* x, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i]))
      return Status::errorf("{}: tensor '{}': element {} is {} (expected finite numbers)", dir, name, i, x[i]);
  return Status::ok();
}

}  // namespace

Result<Model> load_model(const std::string& dir) {
  M1_ASSIGN_OR_RETURN(ModelConfig cfg, load_model_config(path_join(dir, "config.json")));
  M1_ASSIGN_OR_RETURN(SafetensorsReader rd, SafetensorsReader::open(dir));
  Model m(std::move(cfg));
  std::set<std::string> expected;
  for (const ParamSpec& s : m.specs()) {
    M1_ASSIGN_OR_RETURN(TensorSlice src, locate_param(rd, m.config(), s.name, s.shape));
    expected.insert(src.name);
    M1_RETURN_IF_ERROR(rd.read_f32_range(src.name, src.shape, src.begin, src.count, m.params() + s.offset));
    M1_RETURN_IF_ERROR(check_finite(dir, s.name, m.params() + s.offset, s.numel));
  }
  for (const TensorInfo& t : rd.tensors())
    if (!expected.count(t.name) && !is_hf_buffer(t.name))
      log_warn("{}: tensor '{}' is not part of the model; ignored", dir, t.name);
  return m;
}

Status save_model(const Model& m, const std::string& dir, const std::string& dtype) {
  std::vector<TensorToWrite> ts;
  for (const ParamSpec& s : m.specs()) ts.push_back({s.name, s.shape, m.params() + s.offset});
  M1_RETURN_IF_ERROR(write_safetensors(path_join(dir, "model.safetensors"), ts, dtype));
  return write_file(path_join(dir, "config.json"), model_config_to_json(m.config()));
}

Status save_adam_moments(const Model& m, const std::vector<float>& mom, const std::vector<float>& var,
                         const std::string& dir) {
  std::vector<TensorToWrite> opt;
  for (const ParamSpec& s : m.specs()) {
    opt.push_back({"m." + s.name, s.shape, mom.data() + s.offset});
    opt.push_back({"v." + s.name, s.shape, var.data() + s.offset});
  }
  return write_safetensors(path_join(dir, "optimizer.safetensors"), opt, "F32");
}

Status load_adam_moments(const Model& m, const std::string& dir, std::vector<float>* mom, std::vector<float>* var) {
  M1_ASSIGN_OR_RETURN(SafetensorsReader rd, SafetensorsReader::open(path_join(dir, "optimizer.safetensors")));
  mom->assign(m.num_params(), 0.f);
  var->assign(m.num_params(), 0.f);
  for (const ParamSpec& s : m.specs()) {
    M1_RETURN_IF_ERROR(rd.read_f32("m." + s.name, s.shape, mom->data() + s.offset));
    M1_RETURN_IF_ERROR(rd.read_f32("v." + s.name, s.shape, var->data() + s.offset));
    M1_RETURN_IF_ERROR(check_finite(dir, "m." + s.name, mom->data() + s.offset, s.numel));
    M1_RETURN_IF_ERROR(check_finite(dir, "v." + s.name, var->data() + s.offset, s.numel));
  }
  return Status::ok();
}

}  // namespace m1
