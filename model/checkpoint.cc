#include "model/checkpoint.h"

#include <algorithm>
#include <vector>

#include "base/file.h"

namespace m1 {
namespace {

bool parse_step(const std::string& name, int64_t* step) {
  if (name.rfind("step_", 0) != 0 || name.size() == 5) return false;
  int64_t v = 0;
  for (size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    v = v * 10 + (name[i] - '0');
  }
  *step = v;
  return true;
}

}  // namespace

Status commit_checkpoint(const std::string& root, int64_t step, const std::function<Status(const std::string&)>& fill) {
  M1_RETURN_IF_ERROR(make_dirs(root));
  const std::string name = "step_" + std::to_string(step);
  const std::string tmp = path_join(root, ".tmp-" + name), dst = path_join(root, name);
  M1_RETURN_IF_ERROR(remove_all(tmp));
  M1_RETURN_IF_ERROR(make_dirs(tmp));
  M1_RETURN_IF_ERROR(fill(tmp));
  M1_RETURN_IF_ERROR(fsync_dir(tmp));
  M1_RETURN_IF_ERROR(remove_all(dst));  // an incomplete one from a crash
  M1_RETURN_IF_ERROR(rename_durable(tmp, dst));
  M1_RETURN_IF_ERROR(write_file(path_join(dst, "DONE"), std::string("ok\n")));
  return fsync_dir(dst);
}

CheckpointRef latest_checkpoint(const std::string& root) {
  CheckpointRef best;
  for (const std::string& n : list_dir(root)) {
    int64_t s;
    if (!parse_step(n, &s)) continue;
    const std::string d = path_join(root, n);
    if (!path_exists(path_join(d, "DONE"))) continue;
    if (s > best.step) best = {d, s};
  }
  return best;
}

Status prune_checkpoints(const std::string& root, int keep) {
  std::vector<int64_t> complete;
  for (const std::string& n : list_dir(root)) {
    const std::string d = path_join(root, n);
    int64_t s;
    if (n.rfind(".tmp-", 0) == 0) {
      M1_RETURN_IF_ERROR(remove_all(d));
    } else if (parse_step(n, &s)) {
      if (!path_exists(path_join(d, "DONE")))
        M1_RETURN_IF_ERROR(remove_all(d));
      else
        complete.push_back(s);
    }
  }
  std::sort(complete.rbegin(), complete.rend());
  for (size_t i = size_t(std::max(keep, 1)); i < complete.size(); ++i)
    M1_RETURN_IF_ERROR(remove_all(path_join(root, "step_" + std::to_string(complete[i]))));
  return Status::ok();
}

}  // namespace m1
