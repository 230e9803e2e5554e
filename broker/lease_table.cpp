#include "lease_table.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

namespace sockbroker::broker {
namespace {

bool exited(int pidfd) {
  pollfd probe{pidfd, POLLIN, 0};
  const int ready = ::poll(&probe, 1, 0);
  return ready < 0 || (ready > 0 && (probe.revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) != 0);
}

}  // namespace

bool process_alive(int pidfd) noexcept { return pidfd >= 0 && !exited(pidfd); }

std::uint64_t process_start_time(pid_t pid) noexcept {
  const std::string path = "/proc/" + std::to_string(pid) + "/stat";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return 0;
  char buffer[1024];
  ssize_t n = ::read(fd.get(), buffer, sizeof buffer - 1);
  if (n <= 0) return 0;
  buffer[n] = '\0';
  // "PID (COMM) STATE ...": COMM may hold anything, spaces and ')' included,
  // so the fields start after the last ')'. starttime is field 22; STATE is 3.
  const char* p = std::strrchr(buffer, ')');
  if (p == nullptr) return 0;
  ++p;
  for (int field = 3; field < 22; ++field) {
    p = std::strchr(p + 1, ' ');
    if (p == nullptr) return 0;
  }
  return std::strtoull(p + 1, nullptr, 10);
}

std::uint64_t socket_inode(int fd) noexcept {
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0) return 0;
  return static_cast<std::uint64_t>(st.st_ino);
}

std::uint64_t Lease::current_inode() const noexcept {
  if (inode != 0) return inode;
  return kernel_socket ? socket_inode(kernel_socket->get()) : 0;
}

void LeaseTable::forget(const Holder& holder) {
  by_token_.erase(holder.token);
  if (auto it = per_uid_.find(holder.uid); it != per_uid_.end() && --it->second == 0) per_uid_.erase(it);
  for (const Lease& lease : holder.leases) unindex(holder, lease.entry_id, 1, false);
}

void LeaseTable::unindex(const Holder& holder, std::uint64_t entry_id, std::uint32_t count, bool holder_keeps_some) {
  auto it = by_entry_.find(entry_id);
  if (it == by_entry_.end()) return;
  EntryLeases& index = it->second;
  index.live -= std::min(count, index.live);
  if (index.live == 0) {
    by_entry_.erase(it);
    return;
  }
  if (!holder_keeps_some) std::erase(index.holders, &holder);
}

void LeaseTable::add_lease(Holder& holder, Lease lease) {
  EntryLeases& index = by_entry_[lease.entry_id];
  const bool first_of_entry = std::none_of(holder.leases.begin(), holder.leases.end(),
                                           [&](const Lease& l) { return l.entry_id == lease.entry_id; });
  if (first_of_entry) index.holders.push_back(&holder);
  ++index.live;
  holder.leases.push_back(std::move(lease));
}

std::uint32_t LeaseTable::live_grants(std::uint64_t entry_id) const noexcept {
  auto it = by_entry_.find(entry_id);
  return it == by_entry_.end() ? 0 : it->second.live;
}

Holder* LeaseTable::live_record(pid_t pid, std::unique_ptr<Holder>& stale) {
  auto it = holders_.find(pid);
  if (it == holders_.end()) return nullptr;
  if (!exited(it->second->pidfd.get())) return it->second.get();
  forget(*it->second);
  stale = std::move(it->second);
  holders_.erase(it);
  return nullptr;
}

std::size_t LeaseTable::holders_of(uid_t uid) const noexcept {
  auto it = per_uid_.find(uid);
  return it == per_uid_.end() ? 0 : it->second;
}

Result<Holder*> LeaseTable::new_record(pid_t pid, uid_t uid, int session_pidfd) {
  UniqueFd pidfd(::fcntl(session_pidfd, F_DUPFD_CLOEXEC, 0));
  if (!pidfd) return errno_error("fcntl(F_DUPFD_CLOEXEC) of a pidfd");
  return adopt_record(pid, uid, std::move(pidfd));
}

Holder* LeaseTable::adopt_record(pid_t pid, uid_t uid, UniqueFd pidfd) {
  auto holder = std::make_unique<Holder>(make_token(WatchKind::holder, next_serial_++), pid, uid, std::move(pidfd));
  Holder* raw = holder.get();
  by_token_.emplace(raw->token, raw);
  holders_[pid] = std::move(holder);
  ++per_uid_[uid];
  return raw;
}

std::unique_ptr<Holder> LeaseTable::remove(const Holder& holder) {
  auto it = holders_.find(holder.pid);
  if (it == holders_.end() || it->second.get() != &holder) return nullptr;
  forget(holder);
  auto out = std::move(it->second);
  holders_.erase(it);
  return out;
}

std::vector<LeaseTable::Dropped> LeaseTable::drop_entry(std::uint64_t entry_id) {
  auto node = by_entry_.extract(entry_id);
  std::vector<Dropped> dropped;
  if (node.empty()) return dropped;
  for (Holder* holder : node.mapped().holders) {
    auto& leases = holder->leases;
    auto keep = std::stable_partition(leases.begin(), leases.end(), [&](const Lease& l) { return l.entry_id != entry_id; });
    for (auto it = keep; it != leases.end(); ++it) dropped.push_back(Dropped{holder->pid, std::move(*it)});
    leases.erase(keep, leases.end());
  }
  return dropped;
}

std::size_t LeaseTable::drop_closed_members(std::uint64_t entry_id, const std::unordered_set<std::uint64_t>& alive) {
  auto it = by_entry_.find(entry_id);
  if (it == by_entry_.end()) return 0;
  // A copy: unindex() may take a holder off the list, or the entry off the index.
  const std::vector<Holder*> holders = it->second.holders;
  std::size_t dropped = 0;
  for (Holder* holder : holders) {
    auto& leases = holder->leases;
    auto closed = [&](const Lease& l) { return l.entry_id == entry_id && l.member() && !alive.contains(l.inode); };
    const auto n = static_cast<std::size_t>(std::count_if(leases.begin(), leases.end(), closed));
    if (n == 0) continue;
    leases.erase(std::remove_if(leases.begin(), leases.end(), closed), leases.end());
    const bool keeps_some = std::any_of(leases.begin(), leases.end(), [&](const Lease& l) { return l.entry_id == entry_id; });
    unindex(*holder, entry_id, static_cast<std::uint32_t>(n), keeps_some);
    dropped += n;
  }
  return dropped;
}

Holder* LeaseTable::by_token(std::uint64_t token) const noexcept {
  auto it = by_token_.find(token);
  return it == by_token_.end() ? nullptr : it->second;
}

}  // namespace sockbroker::broker
