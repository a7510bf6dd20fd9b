// Multi-GPU communication for the CUDA backend (docs/gpu.md: GPU learners all-reduce gradients with
// NCCL and may broadcast weights with it; otherwise weights travel through pinned host memory).
// Host C++20-safe: no CUDA or NCCL type appears here. Exists only in builds with M1_HAVE_CUDA.
//
// NcclGroup: one member's view of the data-parallel group of one incarnation ("epoch").
//   The coordinator makes a NcclGroupId (NcclGroup::new_id: NCCL's unique id plus the epoch),
//   ships its bytes (NcclGroupId::serialize, 144 bytes) to every member in a message, and each
//   member calls init(rank, nranks, id). When the member count changes, the coordinator makes a
//   new id with a larger epoch and every remaining member calls rebuild(): the old communicator is
//   aborted (a local operation: it never waits for peers that may be gone) and a new one joins.
// Epoch fencing: epochs start at 1 and only move forward. init/rebuild refuse an id whose epoch is
//   not larger than the last one this member joined (a stale or replayed id), and every collective
//   takes the epoch the caller's work belongs to and refuses to run when it is not the group's
//   current epoch: a gradient computed under membership N is never reduced into group N+1 (whose
//   mean has another divisor), and a member that missed a rebuild cannot enter a collective that
//   its peers will never join.
// Errors: NCCL failures are expected in a cluster (a peer died, the network failed), so they come
//   back as Status with NCCL's message (ncclGetErrorString + ncclGetLastError), never an abort.
//   After a failure the communicator is aborted and every later call returns an error until
//   rebuild(). CUDA runtime failures and misuse (wrong thread device) are broken invariants and
//   abort, as everywhere in kernels/cuda. Communicators are NCCL non-blocking ones: init, every
//   collective and synchronize() poll ncclCommGetAsyncError with a deadline (timeout_s) and honour
//   request_abort(), so no call can hang forever on a dead peer.
// Streams: collectives are enqueued on the calling thread's stream (cuda_stream()) and return
//   before the GPU finishes, ordered after the kernels already queued there (e.g. the backward
//   that wrote the gradients); synchronize() waits for them.
// Thread safety: one NcclGroup is driven by one host thread (the one that called init), bound to
//   one device; request_abort() may be called from any thread. Several groups in one process
//   (one per thread and device, as in the tests) are independent.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace m1 {

// Binds the calling host thread to CUDA device `device` (cudaSetDevice). Call it before the
// thread's first CUDA op: the thread's stream is created on the device current at its first use.
// REQUIRES: 0 ≤ device < the device count.
void cuda_set_thread_device(int device);
// The calling thread's current CUDA device.
int cuda_thread_device();

// What the coordinator ships to every member of one group incarnation.
struct NcclGroupId {
  static constexpr size_t kIdBytes = 128;  // NCCL_UNIQUE_ID_BYTES (static_assert in nccl.cu)
  static constexpr uint32_t kMagic = 0x434e314d;  // "M1NC" little-endian
  static constexpr uint32_t kVersion = 1;
  static constexpr size_t kSerializedBytes = 4 + 4 + 8 + kIdBytes;

  uint64_t epoch = 0;  // ≥ 1 for a valid id
  std::array<uint8_t, kIdBytes> id{};

  // Wire form: magic u32 | version u32 | epoch u64 (little-endian) | id (128 bytes).
  std::vector<uint8_t> serialize() const;
  // Parses the wire form; an error names what was wrong (size, magic, version, epoch 0).
  static Result<NcclGroupId> parse(const uint8_t* data, size_t size);
};

class NcclGroup {
 public:
  // timeout_s bounds every wait on peers (init, a collective's setup, synchronize).
  explicit NcclGroup(double timeout_s = 600.0);
  ~NcclGroup();  // aborts the communicator if any (local; never waits for peers)
  NcclGroup(const NcclGroup&) = delete;
  NcclGroup& operator=(const NcclGroup&) = delete;

  // A fresh NCCL unique id for epoch `epoch` (≥ 1). Called once per incarnation, by one process
  // (the coordinator's or rank 0's): NCCL's bootstrap root then listens in this process, which
  // must stay alive until every rank has joined. Needs no device.
  static Result<NcclGroupId> new_id(uint64_t epoch);

  // Joins group `id` as rank `rank` of `nranks` on the calling thread's current device. Blocks
  // until every rank joined, the deadline passes or request_abort(). REQUIRES: not joined;
  // 0 ≤ rank < nranks. Fails (Status) for an id whose epoch ≤ the last epoch joined or
  // attempted (a failed init still consumes its epoch: the coordinator makes a new id).
  Status init(int rank, int nranks, const NcclGroupId& id);
  // Leaves the current group (abort: the caller synchronised its last collective first) and joins
  // `id`, whose epoch must be larger than the current one. Also valid after a failure.
  Status rebuild(int rank, int nranks, const NcclGroupId& id);
  // Leaves the group (abort; local). The last epoch stays recorded for fencing.
  void leave();

  // In-place reductions of n device floats over all ranks, enqueued on the calling thread's
  // stream. mean divides by nranks (ncclAvg). Fails without touching NCCL when `epoch` is not the
  // group's epoch or the group is not joined.
  Status all_reduce_sum(float* buf, size_t n, uint64_t epoch);
  Status all_reduce_mean(float* buf, size_t n, uint64_t epoch);
  // In place: `bytes` device bytes of rank `root` (the learner, rank 0) to every rank (weights
  // publication when learners and GPU generators share a group).
  Status broadcast(void* buf, size_t bytes, int root, uint64_t epoch);

  // Waits until the collectives enqueued on this thread's stream finished, polling NCCL's async
  // error; on error, deadline or request_abort() the communicator is aborted and an error returned.
  Status synchronize();
  // NCCL's asynchronous error state now (ok while healthy or still in progress).
  Status poll();
  // Makes the current or next wait give up (any thread). Cleared by init/rebuild.
  void request_abort() { abort_requested_.store(true); }

  bool joined() const { return comm_ != nullptr; }
  int rank() const { return rank_; }
  int nranks() const { return nranks_; }
  uint64_t epoch() const { return epoch_; }  // last epoch joined or attempted (0: never)
  int device() const { return device_; }

 private:
  Status check_ready(uint64_t epoch, const char* op) const;
  Status all_reduce(float* buf, size_t n, uint64_t epoch, int op, const char* name);
  Status finish(int result, const char* what);  // waits out ncclInProgress; aborts on failure
  Status fail(const std::string& what);          // aborts the communicator, returns the error
  bool past_deadline(double start_s) const;

  void* comm_ = nullptr;  // ncclComm_t
  int rank_ = -1;
  int nranks_ = 0;
  int device_ = -1;
  uint64_t epoch_ = 0;
  double timeout_s_;
  std::atomic<bool> abort_requested_{false};
};

// Pinned-host staging for weights between a device and ordinary (pageable) host memory, for GPU
// generators that do not share an NCCL group with the learner: the learner copies device weights
// to a host blob that travels over UCX (Debian 12's UCX 1.13 is built without CUDA, so it cannot
// read device memory), the generator copies the received blob to its device. Two pinned chunks
// (cudaMallocHost) double-buffer the transfer: the DMA of one chunk overlaps the host memcpy of the
// other. Copies are ordered after the work already queued on the calling thread's stream and are
// complete when the call returns. One thread at a time per PinnedStaging.
class PinnedStaging {
 public:
  // REQUIRES: chunk_bytes > 0. Allocates 2·chunk_bytes of pinned memory.
  explicit PinnedStaging(size_t chunk_bytes = size_t(64) << 20);
  ~PinnedStaging();
  PinnedStaging(const PinnedStaging&) = delete;
  PinnedStaging& operator=(const PinnedStaging&) = delete;

  void device_to_host(void* host_dst, const void* dev_src, size_t bytes);
  void host_to_device(void* dev_dst, const void* host_src, size_t bytes);
  size_t chunk_bytes() const { return chunk_; }

 private:
  size_t chunk_;
  uint8_t* buf_[2] = {nullptr, nullptr};  // pinned
  void* done_[2] = {nullptr, nullptr};    // cudaEvent_t: the last DMA touching buf_[i] finished
};

}  // namespace m1
