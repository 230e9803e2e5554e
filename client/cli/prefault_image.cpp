// Maps the command's own code and read-only data in one madvise(2) before the
// first constructor runs, instead of one page fault at a time.
//
// `sockbroker run` sits between exec and exec on every service start, and it
// touches code scattered over its 1.5 MB of text (CLI11, libstdc++'s locale
// set-up for <iostream>, the client, Cap'n Proto): ~17 read faults, each a
// trap into the kernel that maps 16 pages of the page cache (fault-around).
// MADV_POPULATE_READ (Linux 5.14) maps the same pages from the page cache in a
// single call. Where a fault is cheap (bare metal, ~1-2 us) the two cost about
// the same; where it is not (this paravirtualized VM: 12-25 us) `sockbroker
// run` takes ~0.2 ms less (p50 6.66 -> 6.43 ms). See docs/PERFORMANCE.md.
//
// Only the read-only segments: writable ones are copied on write, and the
// dynamic loader has already written to the pages it relocates. Any failure
// (an older kernel's EINVAL, a seccomp filter's EPERM) just leaves the faults
// to happen as before.
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // <linux/mman.h>; glibc 2.36's headers lack it
#endif

namespace {

int populate_read_only_segments(dl_phdr_info* info, std::size_t, void*) {
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  for (ElfW(Half) i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& segment = info->dlpi_phdr[i];
    if (segment.p_type != PT_LOAD || (segment.p_flags & PF_W) != 0 || segment.p_memsz == 0) continue;
    const std::uintptr_t start = (info->dlpi_addr + segment.p_vaddr) & ~(page - 1);
    const std::uintptr_t end = info->dlpi_addr + segment.p_vaddr + segment.p_memsz;
    (void)::madvise(reinterpret_cast<void*>(start), end - start, MADV_POPULATE_READ);
  }
  return 1;  // the first object listed is the program itself: stop there
}

// Priority 101, the first one available to programs: before libstdc++'s
// ios_base::Init and CLI11's statics, whose code is most of what faults.
__attribute__((constructor(101))) void prefault_image() {
  ::dl_iterate_phdr(populate_read_only_segments, nullptr);
}

}  // namespace
