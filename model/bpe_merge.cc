// The BPE building blocks under BpeTokenizer (bpe_internal.h): UTF-8 checks, the merge table
// and Hugging Face's merge loop, and the word cache.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <queue>
#include <tuple>

#include "model/bpe_internal.h"

namespace m1 {
namespace bpe {

size_t utf8_valid_prefix(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    if (i + 8 <= n) {  // eight ASCII bytes at a time
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      if ((w & 0x8080808080808080ull) == 0) {
        i += 8;
        continue;
      }
    }
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) need = 2, lo = 0xA0;
    else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) need = 2;
    else if (c == 0xED) need = 2, hi = 0x9F;
    else if (c == 0xF0) need = 3, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else if (c == 0xF4) need = 3, hi = 0x8F;
    else return i;
    if (i + need >= n) return i;  // truncated
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k <= need; ++k)
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return i;
    i += need + 1;
  }
  return n;
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const size_t v = utf8_valid_prefix(s.substr(i));
    out.append(s.data() + i, v);
    i += v;
    if (i >= n) break;
    // One U+FFFD for the maximal prefix of a valid sequence (at least the one bad byte).
    const unsigned char c = p[i];
    size_t need = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) need = 2, lo = 0xA0;
    else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) need = 2;
    else if (c == 0xED) need = 2, hi = 0x9F;
    else if (c == 0xF0) need = 3, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else if (c == 0xF4) need = 3, hi = 0x8F;
    size_t j = i + 1;
    if (need > 0 && j < n && p[j] >= lo && p[j] <= hi) {
      ++j;
      while (j < n && j < i + 1 + need && p[j] >= 0x80 && p[j] <= 0xBF) ++j;
    }
    out += "\xEF\xBF\xBD";
    i = j;
  }
  return out;
}

namespace {

constexpr uint64_t kNoMerge = PairMap::kEmpty;

inline uint64_t lookup(const PairMap& merges, int a, int b) {
  return merges.find(uint64_t(uint32_t(a)) << 32 | uint32_t(b));  // rank << 32 | new id: compares by rank
}

}  // namespace

void PairMap::reserve(size_t n) {
  size_t cap = 16;
  while (cap < 2 * n) cap *= 2;
  if (cap <= keys_.size()) return;
  std::vector<uint64_t> k = std::move(keys_), v = std::move(vals_);
  keys_.assign(cap, kEmpty);
  vals_.assign(cap, 0);
  mask_ = cap - 1;
  n_ = 0;
  for (size_t i = 0; i < k.size(); ++i)
    if (k[i] != kEmpty) set(k[i], v[i]);
}

void PairMap::set(uint64_t key, uint64_t value) {
  if (2 * (n_ + 1) > keys_.size()) reserve(n_ + 1 > 8 ? 2 * (n_ + 1) : 16);
  for (size_t i = mix(key) & mask_;; i = (i + 1) & mask_) {
    if (keys_[i] == key) {
      vals_[i] = value;
      return;
    }
    if (keys_[i] == kEmpty) {
      keys_[i] = key;
      vals_[i] = value;
      ++n_;
      return;
    }
  }
}

void merge_symbols_quadratic(const PairMap& merges, std::vector<int>* syms) {
  std::vector<int>& s = *syms;
  if (s.size() < 2) return;
  std::vector<uint64_t> r(s.size() - 1);
  for (size_t i = 0; i + 1 < s.size(); ++i) r[i] = lookup(merges, s[i], s[i + 1]);
  while (!r.empty()) {
    size_t best = 0;
    for (size_t i = 1; i < r.size(); ++i)
      if ((r[i] >> 32) < (r[best] >> 32)) best = i;
    if (r[best] == kNoMerge) break;
    s[best] = int(uint32_t(r[best]));
    s.erase(s.begin() + long(best) + 1);
    r.erase(r.begin() + long(best));
    if (best > 0) r[best - 1] = lookup(merges, s[best - 1], s[best]);
    if (best < r.size()) r[best] = lookup(merges, s[best], s[best + 1]);
  }
}

void merge_symbols_heap(const PairMap& merges, std::vector<int>* syms) {
  std::vector<int>& s = *syms;
  const int n = int(s.size());
  if (n < 2) return;
  std::vector<int> prev(static_cast<size_t>(n)), next(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) prev[size_t(i)] = i - 1, next[size_t(i)] = i + 1 < n ? i + 1 : -1;
  std::vector<char> alive(static_cast<size_t>(n), 1);
  // (rank, position, new id): smallest rank first, then leftmost.
  using Item = std::tuple<uint32_t, int, int>;
  std::priority_queue<Item, std::vector<Item>, std::greater<Item>> q;
  auto push = [&](int i) {
    if (i < 0) return;
    const int j = next[size_t(i)];
    if (j < 0) return;
    const uint64_t m = lookup(merges, s[size_t(i)], s[size_t(j)]);
    if (m != kNoMerge) q.emplace(uint32_t(m >> 32), i, int(uint32_t(m)));
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  while (!q.empty()) {
    const auto [rank, i, id] = q.top();
    q.pop();
    const int j = next[size_t(i)];
    if (!alive[size_t(i)] || j < 0) continue;
    const uint64_t m = lookup(merges, s[size_t(i)], s[size_t(j)]);
    if (m == kNoMerge || int(uint32_t(m)) != id) continue;
    s[size_t(i)] = id;
    alive[size_t(j)] = 0;
    next[size_t(i)] = next[size_t(j)];
    if (next[size_t(j)] >= 0) prev[size_t(next[size_t(j)])] = i;
    push(prev[size_t(i)]);
    push(i);
  }
  size_t w = 0;
  for (int i = 0; i < n; ++i)
    if (alive[size_t(i)]) s[w++] = s[size_t(i)];
  s.resize(w);
}

void merge_symbols(const PairMap& merges, std::vector<int>* syms) {
  if (syms->size() <= 64) merge_symbols_quadratic(merges, syms);
  else merge_symbols_heap(merges, syms);
}

namespace {

struct Slot {
  uint64_t owner = 0;  // WordCache id; 0 = empty
  size_t hash = 0;
  std::string key;
  std::vector<int> ids;
};

std::atomic<uint64_t> next_cache_id{1};

Slot& thread_slot(size_t hash) {
  thread_local std::vector<Slot> slots(WordCache::kThreadSlots);
  return slots[(hash >> 7) % WordCache::kThreadSlots];
}

void fill(Slot& s, uint64_t owner, size_t hash, std::string_view key, const int* ids, size_t n) {
  s.owner = owner;
  s.hash = hash;
  s.key.assign(key.data(), key.size());
  s.ids.assign(ids, ids + n);
}

}  // namespace

WordCache::WordCache() : id_(next_cache_id.fetch_add(1)) {}

bool WordCache::get(std::string_view key, size_t hash, std::vector<int>* out) const {
  Slot& slot = thread_slot(hash);
  if (slot.owner == id_ && slot.hash == hash && slot.key == key) {
    out->insert(out->end(), slot.ids.begin(), slot.ids.end());
    return true;
  }
  Shard& sh = shards_[hash % kShards];
  std::lock_guard<std::mutex> lock(sh.mu);
  auto it = sh.map.find(key);
  if (it == sh.map.end()) return false;
  out->insert(out->end(), it->second.begin(), it->second.end());
  fill(slot, id_, hash, key, it->second.data(), it->second.size());
  return true;
}

void WordCache::put(std::string_view key, size_t hash, const int* ids, size_t n) const {
  fill(thread_slot(hash), id_, hash, key, ids, n);
  Shard& sh = shards_[hash % kShards];
  std::lock_guard<std::mutex> lock(sh.mu);
  if (sh.map.size() >= kMaxPerShard) sh.map.clear();  // a bounded cache: start the shard afresh
  sh.map.emplace(std::string(key), std::vector<int>(ids, ids + n));
}

}  // namespace bpe
}  // namespace m1
