// NcclGroup (data-parallel gradients and weight broadcast over NCCL) and PinnedStaging (weights
// through pinned host memory); contracts in kernels/cuda/nccl.h. Host code only: no kernels here.
#include <nccl.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "base/check.h"
#include "base/log.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/nccl.h"

namespace m1 {

static_assert(NcclGroupId::kIdBytes == NCCL_UNIQUE_ID_BYTES, "NcclGroupId::kIdBytes must match NCCL");
static_assert(sizeof(ncclUniqueId) == NCCL_UNIQUE_ID_BYTES, "ncclUniqueId is its bytes");

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Time between two polls of an in-progress NCCL operation or a busy stream.
void poll_pause() { std::this_thread::sleep_for(std::chrono::microseconds(50)); }

ncclComm_t as_comm(void* c) { return static_cast<ncclComm_t>(c); }

std::string nccl_message(ncclResult_t r, ncclComm_t comm) {
  std::string m = ncclGetErrorString(r);
  const char* last = ncclGetLastError(comm);
  if (last && *last) m += std::string(" (") + last + ")";
  return m;
}

void put_u32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = uint8_t(v >> (8 * i));
}
void put_u64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = uint8_t(v >> (8 * i));
}
uint32_t get_u32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t(p[i]) << (8 * i);
  return v;
}
uint64_t get_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t(p[i]) << (8 * i);
  return v;
}

}  // namespace

// ---- thread device ----

void cuda_set_thread_device(int device) { M1_CUDA_CHECK(cudaSetDevice(device)); }

int cuda_thread_device() {
  int d = 0;
  M1_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

// ---- NcclGroupId ----

std::vector<uint8_t> NcclGroupId::serialize() const {
  std::vector<uint8_t> out(kSerializedBytes);
  put_u32(out.data(), kMagic);
  put_u32(out.data() + 4, kVersion);
  put_u64(out.data() + 8, epoch);
  std::memcpy(out.data() + 16, id.data(), kIdBytes);
  return out;
}

Result<NcclGroupId> NcclGroupId::parse(const uint8_t* data, size_t size) {
  if (size != kSerializedBytes)
    return Status::errorf("nccl group id: expected {} bytes, got {}", kSerializedBytes, size);
  if (get_u32(data) != kMagic) return Status::errorf("nccl group id: bad magic {:#010x}", get_u32(data));
  if (get_u32(data + 4) != kVersion)
    return Status::errorf("nccl group id: version {} (this build reads {})", get_u32(data + 4), kVersion);
  NcclGroupId g;
  g.epoch = get_u64(data + 8);
  if (g.epoch == 0) return Status::error("nccl group id: epoch 0 (epochs start at 1)");
  std::memcpy(g.id.data(), data + 16, kIdBytes);
  return g;
}

// ---- NcclGroup ----

NcclGroup::NcclGroup(double timeout_s) : timeout_s_(timeout_s) {}

NcclGroup::~NcclGroup() { leave(); }

Result<NcclGroupId> NcclGroup::new_id(uint64_t epoch) {
  if (epoch == 0) return Status::error("nccl group id: epoch must be ≥ 1");
  ncclUniqueId uid;
  ncclResult_t r = ncclGetUniqueId(&uid);
  if (r != ncclSuccess) return Status::errorf("ncclGetUniqueId: {}", nccl_message(r, nullptr));
  NcclGroupId g;
  g.epoch = epoch;
  std::memcpy(g.id.data(), uid.internal, NcclGroupId::kIdBytes);
  return g;
}

bool NcclGroup::past_deadline(double start_s) const { return now_s() - start_s > timeout_s_; }

void NcclGroup::leave() {
  if (!comm_) return;
  ncclComm_t c = as_comm(comm_);
  comm_ = nullptr;
  ncclResult_t r = ncclCommAbort(c);
  if (r != ncclSuccess)
    log_warn("nccl group epoch {} rank {}: ncclCommAbort: {}", epoch_, rank_, nccl_message(r, nullptr));
}

Status NcclGroup::fail(const std::string& what) {
  std::string msg = fmt::format("nccl group epoch {} rank {}/{}: {}", epoch_, rank_, nranks_, what);
  leave();
  return Status::error(msg);
}

Status NcclGroup::finish(int result, const char* what) {
  ncclResult_t r = ncclResult_t(result);
  const double start = now_s();
  while (r == ncclInProgress) {
    if (abort_requested_.load()) return fail(std::string(what) + ": aborted on request");
    if (past_deadline(start))
      return fail(fmt::format("{}: no progress after {:.0f} s (a peer missing?)", what, timeout_s_));
    poll_pause();
    ncclResult_t state = ncclSuccess;
    ncclResult_t q = ncclCommGetAsyncError(as_comm(comm_), &state);
    r = q != ncclSuccess ? q : state;
  }
  if (r != ncclSuccess) return fail(std::string(what) + ": " + nccl_message(r, as_comm(comm_)));
  return Status::ok();
}

Status NcclGroup::init(int rank, int nranks, const NcclGroupId& id) {
  M1_CHECK_MSG(comm_ == nullptr, "NcclGroup::init on a joined group (use rebuild)");
  if (nranks < 1 || rank < 0 || rank >= nranks)
    return Status::errorf("nccl group: rank {} of {} is out of range", rank, nranks);
  if (id.epoch <= epoch_)
    return Status::errorf("nccl group: stale id of epoch {} (this member is at epoch {}): fenced", id.epoch,
                          epoch_);
  abort_requested_.store(false);
  epoch_ = id.epoch;
  rank_ = rank;
  nranks_ = nranks;
  device_ = cuda_thread_device();
  ncclUniqueId uid;
  std::memcpy(uid.internal, id.id.data(), NcclGroupId::kIdBytes);
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // init returns ncclInProgress; finish() polls with a deadline
  ncclComm_t c = nullptr;
  ncclResult_t r = ncclCommInitRankConfig(&c, nranks, uid, rank, &config);
  comm_ = c;
  if (r != ncclSuccess && r != ncclInProgress) {
    if (!c) return Status::errorf("nccl group epoch {} rank {}/{}: ncclCommInitRankConfig: {}", epoch_, rank,
                                  nranks, nccl_message(r, nullptr));
    return fail("ncclCommInitRankConfig: " + nccl_message(r, c));
  }
  return finish(r, "ncclCommInitRankConfig");
}

Status NcclGroup::rebuild(int rank, int nranks, const NcclGroupId& id) {
  if (id.epoch <= epoch_)
    return Status::errorf("nccl group: rebuild with stale id of epoch {} (this member is at epoch {}): fenced",
                          id.epoch, epoch_);
  leave();
  return init(rank, nranks, id);
}

Status NcclGroup::check_ready(uint64_t epoch, const char* op) const {
  if (!comm_) return Status::errorf("nccl {}: not joined to a group (last epoch {}); rebuild first", op, epoch_);
  if (epoch != epoch_)
    return Status::errorf("nccl {}: caller's epoch {} is not the group's epoch {}: fenced", op, epoch, epoch_);
  M1_CHECK_MSG(cuda_thread_device() == device_, "NcclGroup used from a thread bound to another device");
  return Status::ok();
}

Status NcclGroup::all_reduce(float* buf, size_t n, uint64_t epoch, int op, const char* name) {
  M1_RETURN_IF_ERROR(check_ready(epoch, name));
  if (n == 0) return Status::ok();
  ncclResult_t r = ncclAllReduce(buf, buf, n, ncclFloat32, ncclRedOp_t(op), as_comm(comm_), current_stream());
  return finish(r, name);
}

Status NcclGroup::all_reduce_sum(float* buf, size_t n, uint64_t epoch) {
  return all_reduce(buf, n, epoch, ncclSum, "all_reduce_sum");
}

Status NcclGroup::all_reduce_mean(float* buf, size_t n, uint64_t epoch) {
  return all_reduce(buf, n, epoch, ncclAvg, "all_reduce_mean");
}

Status NcclGroup::broadcast(void* buf, size_t bytes, int root, uint64_t epoch) {
  M1_RETURN_IF_ERROR(check_ready(epoch, "broadcast"));
  if (root < 0 || root >= nranks_) return Status::errorf("nccl broadcast: root {} of {} ranks", root, nranks_);
  if (bytes == 0) return Status::ok();
  ncclResult_t r = ncclBroadcast(buf, buf, bytes, ncclUint8, root, as_comm(comm_), current_stream());
  return finish(r, "broadcast");
}

Status NcclGroup::poll() {
  if (!comm_) return Status::errorf("nccl group: not joined (last epoch {})", epoch_);
  ncclResult_t state = ncclSuccess;
  ncclResult_t q = ncclCommGetAsyncError(as_comm(comm_), &state);
  ncclResult_t r = q != ncclSuccess ? q : state;
  if (r != ncclSuccess && r != ncclInProgress)
    return fail("async error: " + nccl_message(r, as_comm(comm_)));
  return Status::ok();
}

Status NcclGroup::synchronize() {
  if (!comm_) return Status::errorf("nccl synchronize: not joined (last epoch {})", epoch_);
  cudaStream_t s = current_stream();
  const double start = now_s();
  for (;;) {
    cudaError_t e = cudaStreamQuery(s);
    if (e == cudaSuccess) return poll();
    if (e != cudaErrorNotReady) M1_CUDA_CHECK(e);
    M1_RETURN_IF_ERROR(poll());
    if (abort_requested_.load()) return fail("synchronize: aborted on request");
    if (past_deadline(start))
      return fail(fmt::format("synchronize: collectives not finished after {:.0f} s (a peer missing?)", timeout_s_));
    poll_pause();
  }
}

// ---- PinnedStaging ----

PinnedStaging::PinnedStaging(size_t chunk_bytes) : chunk_(chunk_bytes) {
  M1_CHECK(chunk_bytes > 0);
  for (int i = 0; i < 2; ++i) {
    void* p = nullptr;
    M1_CUDA_CHECK(cudaMallocHost(&p, chunk_));
    buf_[i] = static_cast<uint8_t*>(p);
    cudaEvent_t ev = nullptr;
    M1_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    done_[i] = ev;
  }
}

PinnedStaging::~PinnedStaging() {
  for (int i = 0; i < 2; ++i) {
    if (done_[i]) M1_CUDA_CHECK(cudaEventDestroy(static_cast<cudaEvent_t>(done_[i])));
    if (buf_[i]) M1_CUDA_CHECK(cudaFreeHost(buf_[i]));
  }
}

// Chunk i is [i·chunk, min((i+1)·chunk, bytes)); it uses pinned buffer i mod 2. The DMA of chunk
// i+1 is queued before the host copies chunk i out, so the two overlap.
void PinnedStaging::device_to_host(void* host_dst, const void* dev_src, size_t bytes) {
  if (bytes == 0) return;
  cudaStream_t s = current_stream();
  const size_t chunks = (bytes + chunk_ - 1) / chunk_;
  auto len = [&](size_t i) { return i + 1 < chunks ? chunk_ : bytes - i * chunk_; };
  auto issue = [&](size_t i) {
    const int b = int(i % 2);
    M1_CUDA_CHECK(cudaMemcpyAsync(buf_[b], static_cast<const uint8_t*>(dev_src) + i * chunk_, len(i),
                                  cudaMemcpyDeviceToHost, s));
    M1_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(done_[b]), s));
  };
  issue(0);
  for (size_t i = 0; i < chunks; ++i) {
    // buf_[(i+1) % 2] was last read by the host copy of chunk i−1, which has returned.
    if (i + 1 < chunks) issue(i + 1);
    const int b = int(i % 2);
    M1_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(done_[b])));
    std::memcpy(static_cast<uint8_t*>(host_dst) + i * chunk_, buf_[b], len(i));
  }
}

void PinnedStaging::host_to_device(void* dev_dst, const void* host_src, size_t bytes) {
  if (bytes == 0) return;
  cudaStream_t s = current_stream();
  const size_t chunks = (bytes + chunk_ - 1) / chunk_;
  for (size_t i = 0; i < chunks; ++i) {
    const int b = int(i % 2);
    const size_t n = i + 1 < chunks ? chunk_ : bytes - i * chunk_;
    // The DMA of chunk i−2 read buf_[b]; wait for it before overwriting.
    if (i >= 2) M1_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(done_[b])));
    std::memcpy(buf_[b], static_cast<const uint8_t*>(host_src) + i * chunk_, n);
    M1_CUDA_CHECK(cudaMemcpyAsync(static_cast<uint8_t*>(dev_dst) + i * chunk_, buf_[b], n,
                                  cudaMemcpyHostToDevice, s));
    M1_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(done_[b]), s));
  }
  M1_CUDA_CHECK(cudaStreamSynchronize(s));
}

}  // namespace m1
