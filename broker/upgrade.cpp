#include "upgrade.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>

#include "handover.hpp"

namespace sockbroker::broker {
namespace {

constexpr std::string_view kDeleted = " (deleted)";

Status set_close_on_exec(int fd, bool on) {
  int flags = ::fcntl(fd, F_GETFD);
  if (flags < 0) return errno_error("fcntl(F_GETFD)");
  flags = on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC);
  if (::fcntl(fd, F_SETFD, flags) != 0) return errno_error("fcntl(F_SETFD)");
  return Ok{};
}

}  // namespace

std::string own_binary_path() {
  char buffer[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buffer, sizeof buffer - 1);
  if (n <= 0) return "";
  std::string path(buffer, static_cast<std::size_t>(n));
  if (path.ends_with(kDeleted)) path.resize(path.size() - kDeleted.size());
  return path;
}

std::vector<std::string> upgrade_arguments(int argc, char** argv) {
  std::vector<std::string> out;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--upgrade-from") {
      ++i;  // and its value
      continue;
    }
    if (arg.starts_with("--upgrade-from=") || arg == "--control-created") continue;
    out.emplace_back(arg);
  }
  return out;
}

bool already_confined() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("Seccomp:")) return line.find('2') != std::string::npos;
  }
  return false;
}

Error reexecute(const std::string& binary, const std::vector<std::string>& arguments, BrokerState& state,
                const UpgradeCarry& carry, spdlog::logger& log) {
  // Opened now: the file the path names today (the new release).
  UniqueFd image(::open(binary.c_str(), O_RDONLY | O_CLOEXEC));
  if (!image) return errno_error("cannot open " + binary);

  Snapshot snap = snapshot(state);
  // The state goes in the store's memfd when there is one (systemd then holds
  // it too, should the new image die), else in a memfd of its own.
  UniqueFd own_state;
  int state_fd = carry.fd_store != nullptr ? carry.fd_store->state_memfd() : -1;
  if (state_fd < 0) {
    own_state.reset(::memfd_create("sockbrokerd-state", MFD_CLOEXEC));
    if (!own_state) return errno_error("memfd_create (state)");
    state_fd = own_state.get();
  }
  if (auto s = write_state(state_fd, snap.state); !s) return s.error();

  std::vector<std::pair<std::string, int>> items(snap.descriptors.begin(), snap.descriptors.end());
  items.emplace_back("state", state_fd);
  items.emplace_back("control", carry.control);
  // Audit lines not written yet (a full disk, a stalled journald) would die
  // with this image: they go along, and the next image writes them first;
  // in the store's memfd if it keeps them (the next image then keeps that one),
  // and the keeper holds them too.
  UniqueFd own_unwritten;
  if (const std::string lines = carry.audit != nullptr ? carry.audit->unwritten() : std::string(); !lines.empty()) {
    int unwritten_fd = carry.fd_store != nullptr ? carry.fd_store->unwritten_audit_memfd() : -1;
    if (unwritten_fd < 0) {
      own_unwritten.reset(::memfd_create("sockbrokerd-audit", MFD_CLOEXEC));
      unwritten_fd = own_unwritten.get();
    }
    Status carried = unwritten_fd >= 0 ? write_carried_text(unwritten_fd, lines, "the audit lines not yet written")
                                       : Status(errno_error("memfd_create (audit lines not yet written)"));
    if (!carried) return carried.error();
    items.emplace_back("audit_unwritten", unwritten_fd);
  }
  // The new image, confined, could not open it for writing.
  if (carry.audit_spill >= 0) items.emplace_back("audit_spill", carry.audit_spill);
  // What a next broker needs if the new image dies: copies to the keeper.
  const bool kept = carry.keeper != nullptr;
  if (kept) {
    if (auto s = carry.keeper->hold(items); !s) return s.error();
    items.emplace_back("keeper", carry.keeper->socket());
  }
  auto let_go = [&] {
    if (kept) (void)carry.keeper->release();
  };
  if (carry.audit != nullptr && carry.audit->file() >= 0) items.emplace_back("audit", carry.audit->file());
  if (carry.disposer >= 0) items.emplace_back("disposer", carry.disposer);

  UniqueFd manifest(::memfd_create("sockbrokerd-manifest", MFD_CLOEXEC));
  if (!manifest) {
    let_go();
    return errno_error("memfd_create (manifest)");
  }
  std::string text;
  for (const auto& [name, fd] : items) text += name + " " + std::to_string(fd) + "\n";
  if (::pwrite(manifest.get(), text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    Error e = errno_error("writing the upgrade manifest");
    let_go();
    return e;
  }

  items.emplace_back("manifest", manifest.get());
  for (const auto& [name, fd] : items) {
    if (auto s = set_close_on_exec(fd, false); !s) {
      for (const auto& [other, other_fd] : items) (void)set_close_on_exec(other_fd, true);
      let_go();
      return s.error();
    }
  }

  std::vector<std::string> args{binary};
  args.insert(args.end(), arguments.begin(), arguments.end());
  args.insert(args.end(), {"--upgrade-from", std::to_string(manifest.get())});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  log.info("upgrading in place: executing {} with {} descriptor(s) handed on", binary, items.size() - 1);
  log.flush();
  ::syscall(SYS_execveat, image.get(), "", argv.data(), environ, AT_EMPTY_PATH);
  const int err = errno;

  for (const auto& [name, fd] : items) (void)set_close_on_exec(fd, true);
  let_go();
  return Error{0, err, "cannot execute " + binary};
}

}  // namespace sockbroker::broker
