#include "handover_item.hpp"

#include <fcntl.h>
#include <systemd/sd-daemon.h>

#include <cstdlib>
#include <cstring>
#include <string_view>

namespace sockbroker::broker {
namespace {

// The manifest is written by the previous image of this very daemon, but
// read with the same care as anything else: bounded, and every descriptor
// must be open.
constexpr std::size_t kMaxManifestBytes = 4 << 20;

void close_on_exec(int fd) {
  if (int flags = ::fcntl(fd, F_GETFD); flags >= 0) (void)::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

}  // namespace

std::vector<HandoverItem> take_listen_fds() {
  std::vector<HandoverItem> items;
  char** names = nullptr;
  const int n = ::sd_listen_fds_with_names(1, &names);
  for (int i = 0; i < n; ++i) {
    // sd_listen_fds() has made it close-on-exec already.
    const int fd = SD_LISTEN_FDS_START + i;
    items.push_back(HandoverItem{names != nullptr && names[i] != nullptr ? names[i] : "", UniqueFd(fd)});
  }
  if (names != nullptr) {
    for (int i = 0; i < n; ++i) std::free(names[i]);
    std::free(names);
  }
  return items;
}

Result<std::vector<HandoverItem>> take_manifest(int manifest_fd) {
  UniqueFd manifest(manifest_fd);
  std::string text;
  char chunk[65536];
  for (off_t offset = 0;;) {
    ssize_t n = ::pread(manifest.get(), chunk, sizeof chunk, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("reading the upgrade manifest");
    if (n == 0) break;
    text.append(chunk, static_cast<std::size_t>(n));
    offset += n;
    if (text.size() > kMaxManifestBytes) return Error{0, EFBIG, "the upgrade manifest is too large"};
  }
  std::vector<HandoverItem> items;
  std::string_view rest = text;
  while (!rest.empty()) {
    const std::size_t end = rest.find('\n');
    std::string_view line = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    if (line.empty()) continue;
    const std::size_t space = line.rfind(' ');
    if (space == std::string_view::npos) return Error{0, EINVAL, "upgrade manifest: a line without a descriptor"};
    const std::string number(line.substr(space + 1));
    char* stop = nullptr;
    const long fd = std::strtol(number.c_str(), &stop, 10);
    if (stop == number.c_str() || *stop != '\0' || fd < 3 || fd > 1 << 20 || ::fcntl(static_cast<int>(fd), F_GETFD) < 0) {
      return Error{0, EBADF, "upgrade manifest: \"" + std::string(line) + "\" names no open descriptor"};
    }
    close_on_exec(static_cast<int>(fd));
    items.push_back(HandoverItem{std::string(line.substr(0, space)), UniqueFd(static_cast<int>(fd))});
  }
  return items;
}

}  // namespace sockbroker::broker
