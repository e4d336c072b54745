// The lc_host_alloc'd buffers of a context, shared by both backends (plain C++).
#pragma once
#include <cstdint>
#include <map>

namespace lc {

// Base address -> bytes of each live lc_host_alloc'd buffer.
using HostAllocations = std::map<const void *, uint64_t>;

// Whether [p, p + bytes) lies inside one of the buffers.
inline bool in_host_allocation(const HostAllocations &m, const void *p, uint64_t bytes) {
  auto it = m.upper_bound(p);
  if (it == m.begin()) return false;
  --it;
  const char *base = static_cast<const char *>(it->first), *q = static_cast<const char *>(p);
  return q >= base && uint64_t(q - base) <= it->second && bytes <= it->second - uint64_t(q - base);
}

}  // namespace lc
