// What the broker verified about a caller. Filled by the broker from the
// kernel (SO_PEERCRED, SO_PEERGROUPS, SO_PEERPIDFD); read by the pure matcher.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace sockbroker::policy {

struct PeerIdentity {
  pid_t pid = 0;
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  std::vector<gid_t> groups;  // supplementary groups at connect time
  // Set only when verified to belong to the connecting process (not a recycled
  // pid); a rule that needs an unset field does not match.
  std::optional<std::string> unit;        // systemd unit, e.g. "nginx.service"
  std::optional<std::string> executable;  // absolute path of the binary
  std::optional<std::string> cgroup;      // cgroup v2 path, e.g. "/system.slice/nginx.service"
};

}  // namespace sockbroker::policy
