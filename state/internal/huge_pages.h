#pragma once

#include <cstddef>
#include <cstdlib>
#include <limits>
#include <memory>

namespace sluice::state::internal {

// Memory for the write-back cache's large, randomly read arrays (its blocks, slots and index,
// the store filter's parts) in transparent huge pages where the kernel gives them to regions
// that ask (`madvise` mode, this machine's and Debian's default). At 10M keys with 64 MiB per
// worker every key's lookup and eviction touches a random 4 KiB page of ~60 MB: a TLB miss
// each, and in a virtual machine a two-level page walk, which a prefetch pays too.
//
// Threading: the functions are thread-safe; a buffer belongs to its owner's thread.

// The size of a huge page (2 MiB on x86-64): regions of at least this many bytes are mapped
// and advised; smaller ones come from the heap.
inline constexpr size_t kHugePageBytes = size_t{2} << 20;

// `bytes` (> 0) of zeroed memory aligned to kHugePageBytes, mapped with MADV_HUGEPAGE; nullptr if
// the mapping fails. Release with UnmapHuge(p, bytes).
void* MapHuge(size_t bytes);
void UnmapHuge(void* p, size_t bytes);

// An owned MapHuge() region (or nothing).
class HugeRegion {
 public:
  HugeRegion() = default;
  // Maps `bytes`; data() is nullptr if that failed.
  explicit HugeRegion(size_t bytes) : data_(static_cast<char*>(MapHuge(bytes))), bytes_(bytes) {}
  HugeRegion(HugeRegion&& o) noexcept : data_(o.data_), bytes_(o.bytes_) { o.data_ = nullptr; }
  HugeRegion& operator=(HugeRegion&& o) noexcept {
    if (this != &o) {
      Reset();
      data_ = o.data_;
      bytes_ = o.bytes_;
      o.data_ = nullptr;
    }
    return *this;
  }
  HugeRegion(const HugeRegion&) = delete;
  HugeRegion& operator=(const HugeRegion&) = delete;
  ~HugeRegion() { Reset(); }

  char* data() const { return data_; }

 private:
  void Reset() {
    if (data_ != nullptr) UnmapHuge(data_, bytes_);
    data_ = nullptr;
  }
  char* data_ = nullptr;
  size_t bytes_ = 0;
};

// A std::vector allocator that maps arrays of kHugePageBytes or more with MapHuge() (aborting if
// that fails, as an allocation failure does without exceptions) and takes smaller ones from the
// heap, so a small cache's vectors cost what they did.
template <typename T>
class HugePageAllocator {
 public:
  using value_type = T;
  HugePageAllocator() = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>&) {}  // NOLINT: rebinding, as std::allocator

  T* allocate(size_t n) {
    if (!Huge(n)) return std::allocator<T>().allocate(n);
    void* p = MapHuge(n * sizeof(T));
    if (p == nullptr) std::abort();  // out of memory, as std::allocator without exceptions
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t n) {
    if (Huge(n)) {
      UnmapHuge(p, n * sizeof(T));
    } else {
      std::allocator<T>().deallocate(p, n);
    }
  }

  template <typename U>
  bool operator==(const HugePageAllocator<U>&) const { return true; }
  template <typename U>
  bool operator!=(const HugePageAllocator<U>&) const { return false; }

 private:
  // Whether an array of n elements is mapped (decided by its size alone, so deallocate() agrees
  // with allocate()).
  static bool Huge(size_t n) {
    return n >= kHugePageBytes / sizeof(T) && n <= std::numeric_limits<size_t>::max() / sizeof(T);
  }
};

}  // namespace sluice::state::internal
