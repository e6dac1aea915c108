#include "state/internal/huge_pages.h"

#include <sys/mman.h>

#include <cstdint>

namespace sluice::state::internal {
namespace {

size_t RoundUp(size_t bytes) { return (bytes + kHugePageBytes - 1) & ~(kHugePageBytes - 1); }

}  // namespace

void* MapHuge(size_t bytes) {
  const size_t size = RoundUp(bytes);
  // Mapped with a huge page's slack, then trimmed to an aligned range: the kernel backs only
  // aligned 2 MiB ranges with huge pages.
  void* raw = mmap(nullptr, size + kHugePageBytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + kHugePageBytes - 1) & ~uintptr_t{kHugePageBytes - 1};
  if (aligned > start) munmap(raw, aligned - start);
  const size_t tail = (start + size + kHugePageBytes) - (aligned + size);
  if (tail > 0) munmap(reinterpret_cast<void*>(aligned + size), tail);
  void* p = reinterpret_cast<void*>(aligned);
  // Advice only: without huge pages (THP off, or none free) the region works with small ones.
  (void)madvise(p, size, MADV_HUGEPAGE);
  return p;
}

void UnmapHuge(void* p, size_t bytes) {
  if (p != nullptr) munmap(p, RoundUp(bytes));
}

}  // namespace sluice::state::internal
