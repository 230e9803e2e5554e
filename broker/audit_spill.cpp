#include "audit_spill.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "handover.hpp"

namespace sockbroker::broker {
namespace {

constexpr std::chrono::seconds kKeepInterval{1};  // as systemd's store's copy (fd_store.cpp)

}  // namespace

std::optional<AuditSpill> AuditSpill::open(const std::string& control_path, spdlog::logger& log,
                                           bool log_missing_directory) {
  const std::size_t slash = control_path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : control_path.substr(0, slash);
  const std::string name = control_path.substr(slash == std::string::npos ? 0 : slash + 1) + kSuffix;
  const std::string path = (dir == "/" ? "" : dir) + "/" + name;
  UniqueFd directory(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!directory) {
    if (errno != ENOENT || log_missing_directory) {
      log.warn("audit lines the trail cannot take will not outlive this broker: cannot open {}: {}", dir,
               std::strerror(errno));
    }
    return std::nullopt;
  }
  struct stat st {};
  if (::fstat(directory.get(), &st) != 0 || st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    log.warn("audit lines the trail cannot take will not outlive this broker: {} is not root's alone", dir);
    return std::nullopt;
  }
  UniqueFd file(::openat(directory.get(), name.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!file || ::fstat(file.get(), &st) != 0) {
    log.warn("audit lines the trail cannot take will not outlive this broker: {}: {}", path, std::strerror(errno));
    return std::nullopt;
  }
  if (!S_ISREG(st.st_mode) || st.st_uid != 0 || st.st_nlink != 1 || (st.st_mode & 077) != 0) {
    log.warn("audit lines the trail cannot take will not outlive this broker: {} is not a regular file of root's "
             "alone (mode 0600, one link); remove it",
             path);
    return std::nullopt;
  }
  return AuditSpill(std::move(file), path, st.st_size > 0);
}

AuditSpill AuditSpill::adopt(UniqueFd file, std::string path) {
  struct stat st {};
  const bool holds = ::fstat(file.get(), &st) == 0 && st.st_size > 0;
  return AuditSpill(std::move(file), std::move(path), holds);
}

Result<std::string> AuditSpill::left_over(std::size_t max_bytes) const {
  if (!holds_lines_) return std::string();
  return read_carried_text(file_.get(), max_bytes);
}

void AuditSpill::keep(const Audit& audit, spdlog::logger& log, bool now_anyway) {
  if (!audit.failing()) {
    // Written: the next broker must not write them again.
    if (holds_lines_ && audit.lines_pending() == 0) {
      if (::ftruncate(file_.get(), 0) != 0) {
        log.warn("cannot empty {} (its lines are written): {}", path_, std::strerror(errno));
        return;
      }
      holds_lines_ = false;
    }
    return;
  }
  const auto now = std::chrono::steady_clock::now();
  if (!now_anyway && holds_lines_ && now < last_keep_ + kKeepInterval) return;
  last_keep_ = now;
  if (auto s = write_carried_text(file_.get(), audit.unwritten(), "the unwritten audit lines"); !s) {
    log.warn("cannot keep the unwritten audit lines in {}: {}", path_, s.error().describe());
    return;
  }
  if (!holds_lines_) log.info("the audit lines not yet written are kept in {}: a next broker writes them", path_);
  holds_lines_ = true;
}

}  // namespace sockbroker::broker
