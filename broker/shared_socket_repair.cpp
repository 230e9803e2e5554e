#include "shared_socket_repair.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace sockbroker::broker {
namespace {

// The pids in a relisten event: enough to find who did it among a few.
constexpr std::size_t kMaxPidsInEvent = 64;

bool shared(const TableEntry& entry) {
  return entry.serving() && entry.socket && entry.socket->valid() && !entry.spec.reuse_port &&
         entry.spec.netns == policy::NetnsMode::broker;
}

Damage from_poll(short revents, const policy::SocketSpec& spec) noexcept {
  if ((revents & (POLLHUP | POLLRDHUP)) == 0) return Damage::none;
  // A TCP listener shut down for reading is closed (POLLHUP); a Unix one
  // stays "listening" with its reading side shut (POLLRDHUP), as does a
  // datagram socket.
  return spec.type != SocketType::datagram && !spec.listen.is_unix() ? Damage::not_listening
                                                                           : Damage::reading_shut;
}

bool connected(int fd) noexcept {
  sockaddr_storage peer{};
  socklen_t length = sizeof peer;
  return ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &length) == 0;
}

std::vector<pid_t> holders_of(const LeaseTable& leases, std::uint64_t entry_id) {
  std::vector<pid_t> pids;
  leases.for_each_holder_of(entry_id, [&](const Holder& holder) {
    if (pids.size() < kMaxPidsInEvent) pids.push_back(holder.pid);
  });
  std::sort(pids.begin(), pids.end());
  return pids;
}

std::string pid_list(const std::vector<pid_t>& pids) {
  if (pids.empty()) return "none";
  std::string out = "pid";
  for (pid_t pid : pids) out += " " + std::to_string(pid);
  return out;
}

}  // namespace

const char* to_string(Damage damage) noexcept {
  switch (damage) {
    case Damage::none: return "none";
    case Damage::not_listening: return "not_listening";
    case Damage::reading_shut: return "reading_shut";
    case Damage::connected: return "connected";
  }
  return "none";
}

Damage inspect_shared_socket(int fd, const policy::SocketSpec& spec) noexcept {
  pollfd probe{fd, POLLRDHUP, 0};
  if (::poll(&probe, 1, 0) < 0) return Damage::none;
  if (Damage found = from_poll(probe.revents, spec); found != Damage::none) return found;
  if (spec.type == SocketType::datagram && connected(fd)) return Damage::connected;
  return Damage::none;
}

void repair_shared_socket(BrokerState& state, TableEntry& entry, Damage damage, std::string_view noticed, Audit& audit,
                          spdlog::logger& log) {
  const policy::SocketSpec spec = entry.spec;
  const std::vector<pid_t> holders = holders_of(state.leases, entry.id);
  const int fd = entry.socket->get();
  std::string action;
  std::string tried;  // what was tried first, and why it was not enough
  if (damage == Damage::not_listening) {
    action = "listen";
    if (::listen(fd, static_cast<int>(spec.backlog)) != 0) {
      tried = std::string("listen: ") + std::strerror(errno);
    } else if (Damage left = inspect_shared_socket(fd, spec); left != Damage::none) {
      tried = std::string("listen left it ") + to_string(left);
    }
  } else if (damage == Damage::connected) {
    action = "disconnect";
    sockaddr unspecified{};
    unspecified.sa_family = AF_UNSPEC;
    if (::connect(fd, &unspecified, sizeof unspecified) != 0) {
      tried = std::string("connect(AF_UNSPEC): ") + std::strerror(errno);
    } else if (Damage left = inspect_shared_socket(fd, spec); left != Damage::none) {
      tried = std::string("connect(AF_UNSPEC) left it ") + to_string(left);
    }
  }
  bool rebound = false;
  if (damage == Damage::reading_shut || !tried.empty()) {
    // Bound afresh, as a revoke does: holders of the old socket are told (it
    // is dead to them too); if its address is still held (a datagram port,
    // by holders that keep it open), the entry fails and is retried.
    action = "rebind";
    rebound = true;
    (void)state.table.revoke(spec.name, state.leases, audit, log);
  }
  const TableEntry& now = *state.table.find(spec.name);
  const bool ok = now.serving();

  auto fields = socket_json(spec);
  fields["found"] = to_string(damage);
  fields["noticed"] = noticed;
  fields["action"] = action;
  fields["ok"] = ok;
  if (!tried.empty()) fields["tried"] = tried;
  if (!ok) fields["error"] = now.error;
  fields["holders"] = holders;
  audit.emit("relisten", std::move(fields));

  const std::string what = damage == Damage::not_listening  ? "not listening (a holder shut it down for reading)"
                           : damage == Damage::reading_shut ? "shut down for reading by a holder"
                                                            : "connected to one peer by a holder";
  if (!ok) {
    log.error("socket \"{}\": {} (holders: {}); {}; could not bind it again: {} (retried with backoff)", spec.name, what,
              pid_list(holders), tried.empty() ? "binding it afresh" : tried, now.error);
  } else {
    log.warn("socket \"{}\": {} (holders: {}); {}", spec.name, what, pid_list(holders),
             rebound ? "bound afresh" + (tried.empty() ? std::string() : " (" + tried + ")") + "; its holders are told"
                     : action == "listen" ? std::string("listening again") : std::string("disconnected"));
  }
}

void check_shared_sockets(BrokerState& state, std::chrono::steady_clock::time_point now, Audit& audit,
                          spdlog::logger& log, bool now_anyway) {
  if (auto due = next_shared_socket_check(state); !now_anyway && (!due || now < *due)) return;
  state.next_shared_socket_check = now + kSharedSocketCheckInterval;
  std::vector<pollfd> probes;
  std::vector<const TableEntry*> of;
  for (const TableEntry& entry : state.table.entries()) {
    // Only what a holder may have broken: with 10,000 sockets in the policy,
    // polling them all took ~6 ms of the loop every second.
    if (!shared(entry) || !entry.maybe_handed_out()) continue;
    probes.push_back(pollfd{entry.socket->get(), POLLRDHUP, 0});
    of.push_back(&entry);
  }
  if (probes.empty() || ::poll(probes.data(), probes.size(), 0) < 0) return;
  // Names first: a repair may rebind an entry in place.
  std::vector<std::pair<std::string, Damage>> found;
  for (std::size_t i = 0; i < probes.size(); ++i) {
    const policy::SocketSpec& spec = of[i]->spec;
    Damage damage = from_poll(probes[i].revents, spec);
    if (damage == Damage::none && spec.type == SocketType::datagram && connected(probes[i].fd)) {
      damage = Damage::connected;
    }
    if (damage != Damage::none) found.emplace_back(spec.name, damage);
  }
  for (const auto& [name, damage] : found) {
    if (TableEntry* entry = state.table.find(name); entry != nullptr && shared(*entry)) {
      repair_shared_socket(state, *entry, damage, now_anyway ? "list" : "check", audit, log);
    }
  }
}

std::optional<std::chrono::steady_clock::time_point> next_shared_socket_check(const BrokerState& state) {
  if (state.leases.holder_count() == 0) return std::nullopt;
  return state.next_shared_socket_check;
}

}  // namespace sockbroker::broker
