#include "fd_store.hpp"

#include <sys/mman.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "audit.hpp"
#include "handover.hpp"

namespace sockbroker::broker {
std::uint64_t FdStore::inode_of(int fd) noexcept {
  struct stat st {};
  return ::fstat(fd, &st) == 0 ? static_cast<std::uint64_t>(st.st_ino) : 0;
}

bool FdStore::notify_socket_set() noexcept {
  const char* notify = std::getenv("NOTIFY_SOCKET");
  return notify != nullptr && *notify != '\0';
}

std::optional<FdStore> FdStore::open(spdlog::logger& log, const std::map<std::string, std::uint64_t>& already_stored,
                                     UniqueFd state_memfd, UniqueFd audit_memfd) {
  if (!notify_socket_set()) return std::nullopt;
  const bool fresh = !state_memfd;
  if (fresh) state_memfd.reset(::memfd_create("sockbrokerd-state", MFD_CLOEXEC));
  if (!state_memfd) {
    log.warn("no file descriptor store: memfd_create: {}", std::strerror(errno));
    return std::nullopt;
  }
  FdStore store(std::move(state_memfd));
  store.stored_ = already_stored;
  store.audit_memfd_ = std::move(audit_memfd);
  // Stored once, rewritten in place from then on.
  if (fresh && !store.store("state", store.state_memfd_.get(), log)) return std::nullopt;
  return store;
}

bool FdStore::store(const std::string& name, int fd, spdlog::logger& log) {
  if (refused_) return false;
  // FDPOLL=0: a shut-down socket reports POLLHUP, and systemd would drop it
  // from the store; the broker decides what stays.
  const std::string message = "FDSTORE=1\nFDPOLL=0\nFDNAME=" + name;
  const int rc = ::sd_pid_notify_with_fds(0, 0, message.c_str(), &fd, 1);
  if (rc <= 0) {
    refused_ = true;
    log.warn("cannot keep sockets in systemd's file descriptor store ({}): a restart binds them afresh; set "
             "FileDescriptorStoreMax= in the unit, as the shipped sockbroker.service does",
             rc < 0 ? std::strerror(-rc) : "NOTIFY_SOCKET unset");
    return false;
  }
  stored_[name] = inode_of(fd);
  return true;
}

void FdStore::remove(const std::string& name, spdlog::logger& log) {
  const std::string message = "FDSTOREREMOVE=1\nFDNAME=" + name;
  if (int rc = ::sd_notify(0, message.c_str()); rc < 0) {
    log.warn("cannot remove {} from systemd's file descriptor store: {}", name, std::strerror(-rc));
  }
  stored_.erase(name);
}

void FdStore::store_control(int fd, spdlog::logger& log) {
  if (!stored_.contains("control")) (void)store("control", fd, log);
}

std::optional<FdStore::Clock::time_point> FdStore::deadline() const noexcept {
  if (!stale_ || refused_) return std::nullopt;
  return last_sync_ + kSyncInterval;
}

void FdStore::sync(BrokerState& state, spdlog::logger& log, bool now_anyway) {
  if (!stale_ || refused_) return;
  const auto now = Clock::now();
  if (!now_anyway && now < last_sync_ + kSyncInterval) return;
  stale_ = false;
  last_sync_ = now;

  Snapshot snap = snapshot(state);
  // Gone, or the same name on another socket (a reuse_port entry's port
  // holder after a grant took the last one): removed first, since a removal
  // takes every descriptor of that name.
  std::vector<std::string> gone;
  for (const auto& [name, inode] : stored_) {
    if (name == "state" || name == "control" || name == kAuditItem) continue;
    auto it = snap.descriptors.find(name);
    if (it == snap.descriptors.end() || inode_of(it->second) != inode) gone.push_back(name);
  }
  for (const auto& name : gone) remove(name, log);
  for (const auto& [name, fd] : snap.descriptors) {
    if (!stored_.contains(name) && !store(name, fd, log)) return;
  }
  if (auto s = write_state(state_memfd_.get(), snap.state); !s) {
    log.warn("cannot write the state kept in systemd's store: {}", s.error().message);
  }
}

void FdStore::keep_unwritten_audit(const Audit& audit, spdlog::logger& log, bool now_anyway) {
  if (!audit.failing()) {
    if (audit_memfd_) {
      remove(kAuditItem, log);
      audit_memfd_.reset();
    }
    return;
  }
  if (refused_) return;
  const auto now = Clock::now();
  if (!now_anyway && audit_memfd_ && now < last_audit_keep_ + kAuditKeepInterval) return;
  last_audit_keep_ = now;
  if (audit_memfd_) {
    // Rewritten in place: systemd holds the same open file.
    if (auto s = write_carried_text(audit_memfd_.get(), audit.unwritten(), "the unwritten audit lines"); !s) {
      log.warn("cannot keep the unwritten audit lines in systemd's store: {}", s.error().describe());
    }
    return;
  }
  UniqueFd memfd(::memfd_create("sockbrokerd-audit", MFD_CLOEXEC));
  Status written = memfd ? write_carried_text(memfd.get(), audit.unwritten(), "the unwritten audit lines")
                         : Status(errno_error("memfd_create (audit)"));
  if (!written) {
    log.warn("cannot keep the unwritten audit lines in systemd's store: {}", written.error().describe());
    return;
  }
  if (store(kAuditItem, memfd.get(), log)) {
    audit_memfd_ = std::move(memfd);
    log.info("the audit lines not yet written are kept in systemd's store: a restart writes them");
  }
}

}  // namespace sockbroker::broker
