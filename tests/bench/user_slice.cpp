#include "user_slice.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "bench_env.hpp"

namespace sbbench {
namespace {

namespace fs = std::filesystem;

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.flush();
  return static_cast<bool>(out);
}

// Where CPU cgroups are made: v2's unified root with "cpu" delegated to its
// children, or v1's cpu controller mount.
std::optional<std::string> cpu_hierarchy(std::string* why) {
  if (fs::exists("/sys/fs/cgroup/cgroup.controllers")) {
    // Enabling it at the root is allowed even with processes there.
    if (!write_file("/sys/fs/cgroup/cgroup.subtree_control", "+cpu")) {
      *why = "cannot enable the cpu controller in /sys/fs/cgroup/cgroup.subtree_control";
      return std::nullopt;
    }
    return "/sys/fs/cgroup";
  }
  if (fs::exists("/sys/fs/cgroup/cpu/cpu.shares")) return "/sys/fs/cgroup/cpu";
  *why = "no cgroup v2 and no v1 cpu controller under /sys/fs/cgroup";
  return std::nullopt;
}

}  // namespace

std::optional<UserSlice> UserSlice::make(const std::string& name, std::string* why) {
  auto root = cpu_hierarchy(why);
  if (!root) return std::nullopt;
  const std::string dir = *root + "/" + name;
  std::error_code ec;
  fs::remove(dir, ec);  // a leftover of an interrupted run (empty, or this fails)
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    *why = "mkdir " + dir + ": " + std::strerror(errno);
    return std::nullopt;
  }
  return UserSlice(dir);
}

UserSlice::~UserSlice() {
  if (dir_.empty()) return;
  // Killed processes leave their cgroup as they are reaped: wait for that.
  for (int i = 0; i < 200 && ::rmdir(dir_.c_str()) != 0 && errno == EBUSY; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void UserSlice::add(pid_t pid) const {
  // cgroup.procs moves the whole process (v2, and v1 since 3.x).
  if (!write_file(dir_ + "/cgroup.procs", std::to_string(pid))) die("move " + std::to_string(pid) + " to " + dir_);
}

}  // namespace sbbench
