// NcclGroup and PinnedStaging (kernels/cuda/nccl.h): one-rank group identities, epoch fencing,
// two ranks in two threads when the machine has two devices (sum, mean, broadcast, then a rebuild
// to one rank), the group id's wire form, and a bit-exact staging round trip.
#include <doctest/doctest.h>

#include <barrier>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "base/rng.h"
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/nccl.h"
#include "tests/gpu/gpu_test_util.h"

namespace m1 {
namespace {

using gpu_test::DeviceBuffer;

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

NcclGroupId must_new_id(uint64_t epoch) {
  auto id = NcclGroup::new_id(epoch);
  INFO("NcclGroup::new_id: " << id.status().message());
  REQUIRE(id.is_ok());
  return id.value();
}

TEST_CASE("nccl: group id wire form round-trips and bad bytes are rejected") {
  NcclGroupId g;
  g.epoch = 0x0123456789abcdefull;
  for (size_t i = 0; i < g.id.size(); ++i) g.id[i] = uint8_t(i * 7 + 3);
  std::vector<uint8_t> bytes = g.serialize();
  REQUIRE(bytes.size() == NcclGroupId::kSerializedBytes);
  auto back = NcclGroupId::parse(bytes.data(), bytes.size());
  REQUIRE(back.is_ok());
  CHECK(back->epoch == g.epoch);
  CHECK(back->id == g.id);

  CHECK_FALSE(NcclGroupId::parse(bytes.data(), bytes.size() - 1).is_ok());
  std::vector<uint8_t> bad = bytes;
  bad[0] ^= 1;
  CHECK_FALSE(NcclGroupId::parse(bad.data(), bad.size()).is_ok());
  bad = bytes;
  bad[4] = 9;  // version
  CHECK_FALSE(NcclGroupId::parse(bad.data(), bad.size()).is_ok());
  bad = bytes;
  std::memset(bad.data() + 8, 0, 8);  // epoch 0
  CHECK_FALSE(NcclGroupId::parse(bad.data(), bad.size()).is_ok());
}

TEST_CASE("nccl: one-rank group is the identity; stale epochs are fenced") {
  Rng rng(11);
  const std::vector<float> x = gpu_test::random_vec(rng, 4099);
  NcclGroup group(120.0);
  NcclGroupId id1 = must_new_id(1);
  Status st = group.init(0, 1, id1);
  INFO("init: " << st.message());
  REQUIRE(st.is_ok());
  CHECK(group.epoch() == 1);
  DeviceBuffer<float> buf(x);

  CHECK(group.all_reduce_sum(buf.p, x.size(), 1).is_ok());
  CHECK(group.synchronize().is_ok());
  CHECK(same_bits(buf.download(), x));
  CHECK(group.all_reduce_mean(buf.p, x.size(), 1).is_ok());
  CHECK(group.synchronize().is_ok());
  CHECK(same_bits(buf.download(), x));  // divided by 1
  CHECK(group.broadcast(buf.p, x.size() * sizeof(float), 0, 1).is_ok());
  CHECK(group.synchronize().is_ok());
  CHECK(same_bits(buf.download(), x));
  CHECK_FALSE(group.broadcast(buf.p, 4, 1, 1).is_ok());  // root out of range

  // A caller at another epoch never reaches NCCL; a stale id cannot replace the group.
  CHECK_FALSE(group.all_reduce_sum(buf.p, x.size(), 2).is_ok());
  CHECK_FALSE(group.rebuild(0, 1, id1).is_ok());
  CHECK(group.joined());
  CHECK(group.poll().is_ok());

  NcclGroupId id2 = must_new_id(2);
  st = group.rebuild(0, 1, id2);
  INFO("rebuild: " << st.message());
  REQUIRE(st.is_ok());
  CHECK(group.epoch() == 2);
  CHECK_FALSE(group.all_reduce_sum(buf.p, x.size(), 1).is_ok());
  CHECK(group.all_reduce_sum(buf.p, x.size(), 2).is_ok());
  CHECK(group.synchronize().is_ok());
  CHECK(same_bits(buf.download(), x));

  group.leave();
  CHECK_FALSE(group.joined());
  CHECK_FALSE(group.all_reduce_sum(buf.p, x.size(), 2).is_ok());
  CHECK_FALSE(group.init(0, 1, id2).is_ok());  // epoch 2 was already used
}

TEST_CASE("nccl: two ranks in two threads sum, average and broadcast; rebuild to one rank") {
  char why[256] = "";
  if (cuda_device_count(why, sizeof why) < 2) {
    MESSAGE("skipped: needs 2 CUDA devices");
    return;
  }
  const size_t n = (size_t(1) << 20) + 17;
  Rng rng(23);
  const std::vector<float> a0 = gpu_test::random_vec(rng, n), a1 = gpu_test::random_vec(rng, n);
  std::vector<float> sum(n), mean(n);
  for (size_t i = 0; i < n; ++i) {
    sum[i] = a0[i] + a1[i];
    mean[i] = sum[i] * 0.5f;
  }
  NcclGroupId id1 = must_new_id(1), id2 = must_new_id(2);

  // Results per rank, checked on this thread.
  std::string err[2];
  bool sum_ok[2] = {false, false}, mean_ok[2] = {false, false}, bcast_ok[2] = {false, false};
  bool rebuilt_ok = false, left_fenced = false;
  std::barrier<> phase(2);

  auto member = [&](int r) {
    auto note = [&](const Status& s) {
      if (!s.is_ok() && err[r].empty()) err[r] = s.message();
      return s.is_ok();
    };
    cuda_set_thread_device(r);
    NcclGroup group(120.0);
    bool ok = note(group.init(r, 2, id1));
    {
      DeviceBuffer<float> buf(r == 0 ? a0 : a1);
      if (ok && note(group.all_reduce_sum(buf.p, n, 1)) && note(group.synchronize()))
        sum_ok[r] = buf.download() == sum;
      buf.upload(r == 0 ? a0 : a1);
      if (ok && note(group.all_reduce_mean(buf.p, n, 1)) && note(group.synchronize())) {
        std::vector<float> got = buf.download();
        mean_ok[r] = true;
        for (size_t i = 0; i < n; ++i) mean_ok[r] = mean_ok[r] && std::fabs(got[i] - mean[i]) <= 1e-7f;
      }
      buf.upload(r == 0 ? a0 : a1);
      if (ok && note(group.broadcast(buf.p, n * sizeof(float), 0, 1)) && note(group.synchronize()))
        bcast_ok[r] = same_bits(buf.download(), a0);
      phase.arrive_and_wait();  // both ranks are done with epoch 1
      if (r == 0) {
        if (note(group.rebuild(0, 1, id2))) {
          buf.upload(a0);
          rebuilt_ok = note(group.all_reduce_sum(buf.p, n, 2)) && note(group.synchronize()) &&
                       same_bits(buf.download(), a0);
        }
      } else {
        group.leave();
        left_fenced = !group.all_reduce_sum(buf.p, n, 2).is_ok() && !group.all_reduce_sum(buf.p, n, 1).is_ok();
      }
    }
    cuda_synchronize();
  };
  std::thread t0(member, 0), t1(member, 1);
  t0.join();
  t1.join();
  INFO("rank 0: " << err[0] << " | rank 1: " << err[1]);
  CHECK(sum_ok[0]);
  CHECK(sum_ok[1]);
  CHECK(mean_ok[0]);
  CHECK(mean_ok[1]);
  CHECK(bcast_ok[0]);
  CHECK(bcast_ok[1]);
  CHECK(rebuilt_ok);
  CHECK(left_fenced);
}

TEST_CASE("pinned staging: random bytes round-trip bit-exact at chunk edges") {
  const size_t chunk = size_t(1) << 20;
  PinnedStaging staging(chunk);
  Rng rng(37);
  for (size_t bytes : {size_t(0), size_t(1), chunk - 1, chunk, chunk + 1, 2 * chunk, 3 * chunk + 12345}) {
    INFO("bytes = " << bytes);
    std::vector<uint8_t> src(bytes);
    for (auto& b : src) b = uint8_t(rng.next_u64());
    DeviceBuffer<uint8_t> dev(bytes);
    staging.host_to_device(dev.p, src.data(), bytes);
    std::vector<uint8_t> via_plain(bytes);
    cuda_copy_to_host(via_plain.data(), dev.p, bytes);  // independent path
    CHECK(via_plain == src);
    std::vector<uint8_t> back(bytes, 0xa5);
    staging.device_to_host(back.data(), dev.p, bytes);
    CHECK(back == src);
  }
}

}  // namespace
}  // namespace m1
