#include "lease_table.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>

#include <algorithm>

namespace sockbroker::broker {
namespace {

bool exited(int pidfd) {
  pollfd probe{pidfd, POLLIN, 0};
  return ::poll(&probe, 1, 0) > 0 && (probe.revents & (POLLIN | POLLHUP)) != 0;
}

}  // namespace

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
}

std::size_t LeaseTable::holders_of(uid_t uid) const noexcept {
  auto it = per_uid_.find(uid);
  return it == per_uid_.end() ? 0 : it->second;
}

Result<LeaseTable::Found> LeaseTable::holder_for(pid_t pid, uid_t uid, int session_pidfd,
                                                 std::unique_ptr<Holder>& stale) {
  if (auto it = holders_.find(pid); it != holders_.end()) {
    if (!exited(it->second->pidfd.get())) return Found{it->second.get(), false};
    forget(*it->second);
    stale = std::move(it->second);
    holders_.erase(it);
  }
  UniqueFd pidfd(::fcntl(session_pidfd, F_DUPFD_CLOEXEC, 0));
  if (!pidfd) return errno_error("fcntl(F_DUPFD_CLOEXEC) of a pidfd");
  auto holder = std::make_unique<Holder>(make_token(WatchKind::holder, next_serial_++), pid, uid, std::move(pidfd));
  Holder* raw = holder.get();
  by_token_.emplace(raw->token, raw);
  holders_.emplace(pid, std::move(holder));
  ++per_uid_[uid];
  return Found{raw, true};
}

std::unique_ptr<Holder> LeaseTable::remove(const Holder& holder) {
  auto it = holders_.find(holder.pid);
  if (it == holders_.end() || it->second.get() != &holder) return nullptr;
  forget(holder);
  auto out = std::move(it->second);
  holders_.erase(it);
  return out;
}

std::vector<Lease> LeaseTable::drop_entry(std::uint64_t entry_id) {
  std::vector<Lease> dropped;
  for (auto& [pid, holder] : holders_) {
    auto& leases = holder->leases;
    auto keep = std::stable_partition(leases.begin(), leases.end(), [&](const Lease& l) { return l.entry_id != entry_id; });
    std::move(keep, leases.end(), std::back_inserter(dropped));
    leases.erase(keep, leases.end());
  }
  return dropped;
}

Holder* LeaseTable::by_token(std::uint64_t token) const noexcept {
  auto it = by_token_.find(token);
  return it == by_token_.end() ? nullptr : it->second;
}

}  // namespace sockbroker::broker
