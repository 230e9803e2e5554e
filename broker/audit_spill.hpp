// The audit lines a failing trail has not taken, kept in a file next to the
// control socket ("<control>.audit-unwritten", root's, 0600), so that a stop
// or a crash leaves them to the next broker, which writes them first. Without
// it they lived only in memory: systemd's descriptor store (fd_store.hpp)
// keeps them across a restart and a crash, but systemd 252 empties the store
// on `systemctl stop`, and without systemd nothing kept them at all.
//
// The file is rewritten in place while the trail fails (at most once a
// second, and once more before a stop or an upgrade) and emptied as soon as
// the trail takes lines again, so that no line is written twice. An upgrade
// hands the open file on ("audit_spill"): the new image, confined, could not
// open it for writing.
//
// Read back, its lines go into the trail as they are, so the broker trusts
// it only as it trusts the control socket's directory: the directory must be
// root's and writable by nobody else, the file a regular one of root's with a
// single link, opened without following a symbolic link.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include <sockbroker/fd.hpp>

#include "audit.hpp"
#include "logger.hpp"

namespace sockbroker::broker {

class AuditSpill {
 public:
  static constexpr const char* kItem = "audit_spill";  // its name in an upgrade's manifest
  static constexpr const char* kSuffix = ".audit-unwritten";

  // Opens (creating it if missing) the file of the control socket at
  // `control_path`. nullopt, logged, if its directory is missing (a first
  // start: call again once the control socket made it) or untrustworthy.
  [[nodiscard]] static std::optional<AuditSpill> open(const std::string& control_path, spdlog::logger& log,
                                                      bool log_missing_directory);
  // The file a previous image had open (an upgrade in place).
  [[nodiscard]] static AuditSpill adopt(UniqueFd file, std::string path);

  // What a previous broker left (at most `max_bytes`; an error past that).
  [[nodiscard]] Result<std::string> left_over(std::size_t max_bytes) const;
  // Keeps the file in step with `audit`: its unwritten lines while it fails,
  // nothing once it does not; at most once a second unless `now_anyway`.
  void keep(const Audit& audit, spdlog::logger& log, bool now_anyway = false);
  // Whether the file holds lines now.
  [[nodiscard]] bool holds_lines() const noexcept { return holds_lines_; }

  [[nodiscard]] int fd() const noexcept { return file_.get(); }
  [[nodiscard]] const std::string& path() const noexcept { return path_; }

 private:
  AuditSpill(UniqueFd file, std::string path, bool holds_lines)
      : file_(std::move(file)), path_(std::move(path)), holds_lines_(holds_lines) {}

  UniqueFd file_;
  std::string path_;
  bool holds_lines_ = false;
  std::chrono::steady_clock::time_point last_keep_{};
};

}  // namespace sockbroker::broker
