// A CPU cgroup per uid, as systemd gives every user a user-UID.slice of equal
// CPU weight: however many processes one uid runs, together they get one
// uid's share of a contended CPU. The fairness row (fairness_bench.cpp) puts
// the flooding uid and the measured uid in two such slices, so that what it
// measures is what the broker does to the measured uid, not how the CPU
// scheduler shares one core between eleven processes.
//
// cgroup v2 (Debian 12's default) and v1's cpu controller are both handled;
// where neither can be written (not root, a read-only /sys/fs/cgroup), the
// slice is unavailable and the row says so.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

namespace sbbench {

class UserSlice {
 public:
  // A fresh cgroup named `name` under the root of the CPU hierarchy, or
  // nullopt (with `why` set) where none can be made.
  [[nodiscard]] static std::optional<UserSlice> make(const std::string& name, std::string* why);
  UserSlice(UserSlice&& other) noexcept : dir_(std::move(other.dir_)) { other.dir_.clear(); }
  UserSlice& operator=(UserSlice&&) = delete;
  UserSlice(const UserSlice&) = delete;
  ~UserSlice();  // removes the cgroup (its processes must be gone)

  // Moves pid (every thread) into the slice.
  void add(pid_t pid) const;

 private:
  explicit UserSlice(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

}  // namespace sbbench
