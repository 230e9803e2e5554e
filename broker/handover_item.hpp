// One named descriptor handed from one broker to the next: by systemd
// (LISTEN_FDS with LISTEN_FDNAMES, from socket activation or its descriptor
// store) or across an upgrade in place (a manifest). See handover.hpp.
#pragma once

#include <string>
#include <vector>

#include <sockbroker/fd.hpp>

namespace sockbroker::broker {

struct HandoverItem {
  std::string name;
  UniqueFd fd;
};

// What systemd passed (sd_listen_fds_with_names, which also unsets
// LISTEN_FDS so children never see it), each marked close-on-exec.
[[nodiscard]] std::vector<HandoverItem> take_listen_fds();

// What a previous image passed across execve: the manifest memfd `manifest_fd`
// lists "name fd" lines; each fd is taken (and marked close-on-exec again).
[[nodiscard]] Result<std::vector<HandoverItem>> take_manifest(int manifest_fd);

}  // namespace sockbroker::broker
