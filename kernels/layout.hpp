#pragma once
// Where buckets lie: tensors laid end to end, each cut into buckets of `bucket` elements (the last
// one shorter), or one bucket per tensor when bucket == 0. Plain arrays so device code can use it.

#include <cstdint>

#include "kernels/hd.hpp"

namespace gossip::kernels {

struct LayoutView {
  const std::uint64_t* offsets = nullptr;      // tensors + 1 entries, offsets[0] = 0
  const std::uint64_t* bucket_base = nullptr;  // tensors + 1 entries: first bucket of tensor t
  std::uint32_t tensors = 0;
  std::uint64_t bucket = 0;  // 0: one bucket per tensor
  int bucket_shift = -1;     // log2(bucket) when bucket is a power of two: seeks shift, not divide

  GOSSIP_HD std::uint64_t buckets() const { return bucket_base[tensors]; }
  GOSSIP_HD std::uint64_t elements() const { return offsets[tensors]; }
  GOSSIP_HD std::uint64_t bucket_len_of(std::uint32_t t) const {
    return bucket ? bucket : offsets[t + 1] - offsets[t];
  }

  // Largest t with a[t] <= v (a non-decreasing, a[0] = 0 <= v): the tensor holding element v, or
  // with a = bucket_base the tensor holding bucket v. Empty tensors are skipped by "largest".
  GOSSIP_HD static std::uint32_t search(const std::uint64_t* a, std::uint32_t n, std::uint64_t v) {
    std::uint32_t lo = 0, hi = n;  // invariant: a[lo] <= v, answer < hi
    while (hi - lo > 1) {
      const std::uint32_t mid = lo + (hi - lo) / 2;
      if (a[mid] <= v)
        lo = mid;
      else
        hi = mid;
    }
    return lo;
  }

  // Element range [begin, end) of global bucket j.
  GOSSIP_HD void bucket_range(std::uint64_t j, std::uint64_t& begin, std::uint64_t& end) const {
    const std::uint32_t t = search(bucket_base, tensors, j);
    const std::uint64_t b = bucket_len_of(t);
    begin = offsets[t] + (j - bucket_base[t]) * b;
    end = min_u64(begin + b, offsets[t + 1]);
  }
};

// Walks elements in order and tracks their bucket; seeks (binary search) only at bucket ends.
struct BucketCursor {
  std::uint64_t bucket = 0;
  std::uint64_t end = 0;  // first element past the current bucket

  GOSSIP_HD void seek(const LayoutView& l, std::uint64_t i) {
    const std::uint32_t t = LayoutView::search(l.offsets, l.tensors, i);
    const std::uint64_t b = l.bucket_len_of(t);
    const std::uint64_t local = i - l.offsets[t];
    const std::uint64_t j = l.bucket_shift >= 0 ? local >> l.bucket_shift : local / b;
    bucket = l.bucket_base[t] + j;
    end = min_u64(l.offsets[t] + (j + 1) * b, l.offsets[t + 1]);
  }
  // True when i starts a new bucket (the caller then refreshes its per-bucket constants).
  GOSSIP_HD bool at(const LayoutView& l, std::uint64_t i) {
    if (i < end) return false;
    seek(l, i);
    return true;
  }
};

}  // namespace gossip::kernels
