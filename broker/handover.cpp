#include "handover.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "address.hpp"
#include "socket_factory.hpp"
#include "unix_socket_path.hpp"

namespace sockbroker::broker {
namespace {

constexpr int kStateVersion = 1;
// A state of 10,000 sockets and holders is a few megabytes of JSON at most.
constexpr std::size_t kMaxStateBytes = 64 << 20;

int socket_int(int fd, int level, int name) {
  int value = -1;
  socklen_t length = sizeof value;
  return ::getsockopt(fd, level, name, &value, &length) == 0 ? value : -1;
}

int kernel_type(SocketType type) {
  switch (type) {
    case SocketType::stream: return SOCK_STREAM;
    case SocketType::datagram: return SOCK_DGRAM;
    case SocketType::seqpacket: return SOCK_SEQPACKET;
  }
  return -1;
}

// Whether fd is the socket `spec` describes: its family, type and address,
// IPV6_V6ONLY, and listening as the broker's own socket for it would (a
// reuse_port group's port holder never listens). Why not, otherwise.
std::optional<std::string> mismatch(int fd, const policy::SocketSpec& spec, bool member) {
  const policy::Address& want = spec.listen;
  if (socket_int(fd, SOL_SOCKET, SO_TYPE) != kernel_type(spec.type)) return "another socket type";
  sockaddr_storage own{};
  socklen_t length = sizeof own;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&own), &length) != 0) return "no address";
  // The address says the family (one system call fewer per adopted socket).
  if (own.ss_family != want.family()) return "another address family";
  if (want.is_unix()) {
    const auto& sun = reinterpret_cast<const sockaddr_un&>(own);
    const std::size_t n = length > offsetof(sockaddr_un, sun_path) ? length - offsetof(sockaddr_un, sun_path) : 0;
    std::string name(sun.sun_path, n);
    if (want.kind == policy::Address::Kind::unix_abstract) {
      if (name.empty() || name[0] != '\0' || "@" + name.substr(1) != want.text) return "another abstract name";
    } else if (name.c_str() != want.text) {
      return "another path";
    }
  } else {
    SocketAddress address;
    address.family = static_cast<std::uint16_t>(own.ss_family);
    if (own.ss_family == AF_INET) {
      const auto& sin = reinterpret_cast<const sockaddr_in&>(own);
      address.port = ntohs(sin.sin_port);
      const auto* bytes = reinterpret_cast<const std::uint8_t*>(&sin.sin_addr);
      address.bytes.assign(bytes, bytes + 4);
    } else {
      const auto& sin6 = reinterpret_cast<const sockaddr_in6&>(own);
      address.port = ntohs(sin6.sin6_port);
      address.scope_id = sin6.sin6_scope_id;
      const auto* bytes = reinterpret_cast<const std::uint8_t*>(&sin6.sin6_addr);
      address.bytes.assign(bytes, bytes + 16);
    }
    auto got = policy::address_of(address);
    if (!got || !policy::same_address(*got, want)) return "another address";
    if (want.kind == policy::Address::Kind::inet6 && (socket_int(fd, IPPROTO_IPV6, IPV6_V6ONLY) != 0) != spec.v6only) {
      return "another v6only";
    }
  }
  if (spec.type != SocketType::datagram) {
    const bool listening = socket_int(fd, SOL_SOCKET, SO_ACCEPTCONN) == 1;
    const bool should = member || !spec.reuse_port;
    if (listening != should) return should ? "not listening" : "listening";
  }
  return std::nullopt;
}

// "s<id>" -> {id, ""} (the name is the state's); the older "sock.<id>.<name>"
// -> {id, name}.
std::optional<std::pair<std::uint64_t, std::string>> split_name(std::string_view name) {
  const bool long_form = name.starts_with("sock.");
  if (!long_form && !socket_item(name)) return std::nullopt;
  name.remove_prefix(long_form ? 5 : 1);
  std::uint64_t id = 0;
  auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), id);
  if (ec != std::errc()) return std::nullopt;
  if (!long_form) return end == name.data() + name.size() ? std::optional(std::make_pair(id, std::string())) : std::nullopt;
  if (end == name.data() + name.size() || *end != '.') return std::nullopt;
  return std::make_pair(id, std::string(end + 1, name.data() + name.size()));
}

}  // namespace

bool socket_item(std::string_view name) noexcept {
  if (name.starts_with("sock.")) return true;
  return name.size() > 1 && name[0] == 's' &&
         std::all_of(name.begin() + 1, name.end(), [](char c) { return c >= '0' && c <= '9'; });
}

Snapshot snapshot(BrokerState& state) {
  Snapshot out;
  nlohmann::json entries = nlohmann::json::array();
  for (const auto& entry : state.table.entries()) {
    nlohmann::json e{{"id", entry.id}, {"name", entry.spec.name}, {"grants", entry.grants}};
    if (entry.path_file) {
      e["path_device"] = entry.path_file->device;
      e["path_inode"] = entry.path_file->inode;
    }
    entries.push_back(std::move(e));
    if (entry.socket && entry.socket->valid()) {
      out.descriptors["s" + std::to_string(entry.id)] = entry.socket->get();
    }
  }
  nlohmann::json holders = nlohmann::json::array();
  state.leases.for_each_holder([&](Holder& holder) {
    if (holder.start_time == 0) {
      // Read once per holder; valid only if the process still runs after the
      // read (else the pid may already name another process).
      const std::uint64_t start = process_start_time(holder.pid);
      if (start == 0 || !process_alive(holder.pidfd.get())) return;
      holder.start_time = start;
    }
    nlohmann::json leases = nlohmann::json::array();
    for (const Lease& lease : holder.leases) {
      leases.push_back({{"entry", lease.entry_id}, {"inode", lease.member() ? lease.inode : 0}});
    }
    holders.push_back(
        {{"pid", holder.pid}, {"uid", holder.uid}, {"start_time", holder.start_time}, {"leases", std::move(leases)}});
  });
  const Metrics& m = state.metrics;
  out.state = {{"version", kStateVersion},
               {"generation", state.generation},
               {"metrics",
                {{"start_time", m.start_time},
                 {"grants", m.grants},
                 {"denials", m.denials},
                 {"bad_requests", m.bad_requests},
                 {"peak_clients", m.peak_clients},
                 {"reloads_ok", m.reloads_ok},
                 {"reloads_failed", m.reloads_failed},
                 {"upgrades", m.upgrades},
                 {"last_upgrade_time", m.last_upgrade_time}}},
               {"entries", std::move(entries)},
               {"holders", std::move(holders)}};
  return out;
}

Adopted adopt(std::vector<HandoverItem>& items, BrokerState& state, Audit& audit, spdlog::logger& log) {
  Adopted out;
  auto take = [&](std::string_view name) -> UniqueFd {
    for (auto& item : items) {
      if (item.fd && item.name == name) return std::move(item.fd);
    }
    return UniqueFd();
  };
  nlohmann::json saved = nlohmann::json::object();
  if (UniqueFd memfd = take("state")) {
    auto read = read_state(memfd.get());
    if (read && read->is_object() && read->find("version") != read->end() && (*read)["version"] == kStateVersion) {
      saved = std::move(*read);
    } else {
      log.warn("the handed-over state is unreadable ({}); adopting sockets without their counters and leases",
               read ? "unknown version" : read.error().describe());
    }
  }
  // Every field read below is checked for its type: a state is the previous
  // broker's, but one cut short or of another version must not stop this one.
  auto array_at = [](const nlohmann::json& object, const char* key) -> const nlohmann::json& {
    static const nlohmann::json empty = nlohmann::json::array();
    auto it = object.find(key);
    return it != object.end() && it->is_array() ? *it : empty;
  };
  auto number_at = [](const nlohmann::json& object, const char* key) -> std::uint64_t {
    if (!object.is_object()) return 0;
    auto it = object.find(key);
    return it != object.end() && it->is_number_unsigned() ? it->get<std::uint64_t>() : 0;
  };
  // Indexed once: 10,000 sockets must not cost 10,000 scans of 10,000 entries.
  std::unordered_map<std::uint64_t, const nlohmann::json*> saved_by_id;
  for (const auto& e : array_at(saved, "entries")) saved_by_id.emplace(number_at(e, "id"), &e);
  auto saved_entry = [&](std::uint64_t id) -> const nlohmann::json* {
    auto it = saved_by_id.find(id);
    return it == saved_by_id.end() ? nullptr : it->second;
  };
  std::unordered_set<std::string> adopted_names;

  // The sockets: each adopted if it is what the policy in force says.
  std::vector<TableEntry> entries;
  for (auto& item : items) {
    auto parsed = item.fd ? split_name(item.name) : std::nullopt;
    if (!parsed) continue;
    UniqueFd fd = std::move(item.fd);
    if (parsed->second.empty()) {
      // The short form: the state says which socket the id was.
      if (const auto* e = saved_entry(parsed->first); e != nullptr && e->is_object()) {
        if (auto it = e->find("name"); it != e->end() && it->is_string()) parsed->second = it->get<std::string>();
      }
      if (parsed->second.empty()) {
        log.warn("handed-over socket {} is not named in the handed-over state: shut down and closed", item.name);
        (void)::shutdown(fd.get(), SHUT_RDWR);
        ++out.refused;
        continue;
      }
    }
    const policy::SocketSpec* spec = state.policy.find(parsed->second);
    std::optional<std::string> why = spec == nullptr ? std::optional<std::string>("not in the policy")
                                                     : mismatch(fd.get(), *spec, false);
    const bool duplicate = adopted_names.contains(parsed->second);
    if (why || duplicate) {
      // Its holders must not serve on, unseen: shut down as a revoke would.
      log.warn("handed-over socket \"{}\" is not what the policy says ({}): shut down and closed", parsed->second,
               duplicate ? "a second one" : *why);
      (void)::shutdown(fd.get(), SHUT_RDWR);
      ++out.refused;
      continue;
    }
    TableEntry entry;
    entry.id = parsed->first;
    entry.spec = *spec;
    const auto* e = saved_entry(entry.id);
    entry.history_unknown = e == nullptr;
    if (e != nullptr) {
      entry.grants = number_at(*e, "grants");
      if (number_at(*e, "path_inode") != 0) {
        entry.path_file = FileIdentity{static_cast<dev_t>(number_at(*e, "path_device")),
                                       static_cast<ino_t>(number_at(*e, "path_inode"))};
      }
    }
    // What may have changed in the policy meanwhile and a live socket takes.
    std::vector<std::string> notes;
    if (auto s = change_in_place(fd.get(), *spec, spec->type != SocketType::datagram && !spec->reuse_port, notes);
        !s) {
      log.warn("handed-over socket \"{}\": {}", spec->name, s.error().describe());
    }
    if (entry.path_file) (void)set_path_owner_and_mode(*spec, *entry.path_file);
    entry.hold(std::move(fd));
    log.info("socket \"{}\": adopted {} ({})", spec->name, spec->listen.text, to_string(spec->type));
    auto fields = socket_json(*spec);
    fields["adopted"] = true;
    audit.emit("bind", std::move(fields));
    adopted_names.insert(entry.spec.name);
    entries.push_back(std::move(entry));
    ++out.sockets;
  }
  state.table = SocketTable::of(std::move(entries));

  // The holders still alive, with their leases of adopted entries: a pid
  // names the same process only if its start time is the one recorded.
  std::unordered_map<std::uint64_t, const TableEntry*> adopted_by_id;
  for (const auto& e : state.table.entries()) adopted_by_id.emplace(e.id, &e);
  for (const auto& h : array_at(saved, "holders")) {
    const auto pid = static_cast<pid_t>(number_at(h, "pid"));
    const std::uint64_t start_time = number_at(h, "start_time");
    if (pid <= 0 || start_time == 0) continue;
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd || process_start_time(pid) != start_time || !process_alive(pidfd.get())) continue;
    Holder* holder = nullptr;
    if (!h.is_object()) continue;
    for (const auto& l : array_at(h, "leases")) {
      auto found = adopted_by_id.find(number_at(l, "entry"));
      const TableEntry* entry = found == adopted_by_id.end() ? nullptr : found->second;
      if (entry == nullptr) continue;  // not adopted: the lease went with it
      if (holder == nullptr) {
        holder = state.leases.adopt_record(pid, static_cast<uid_t>(number_at(h, "uid")), std::move(pidfd));
        holder->start_time = start_time;
        ++out.holders;
      }
      const std::uint64_t inode = number_at(l, "inode");
      // A member (inode): counted until the census finds it closed. A shared
      // socket: the entry's own.
      state.leases.add_lease(*holder, inode != 0 ? Lease{entry->spec.name, entry->id, nullptr, inode}
                                                 : Lease{entry->spec.name, entry->id, entry->socket, 0});
      ++out.leases;
    }
  }

  if (auto it = saved.find("metrics"); it != saved.end() && it->is_object()) {
    const auto& m = *it;
    Metrics& metrics = state.metrics;
    metrics.grants = number_at(m, "grants");
    metrics.bad_requests = number_at(m, "bad_requests");
    metrics.peak_clients = static_cast<std::uint32_t>(number_at(m, "peak_clients"));
    metrics.reloads_ok = number_at(m, "reloads_ok");
    metrics.reloads_failed = number_at(m, "reloads_failed");
    metrics.upgrades = number_at(m, "upgrades");
    metrics.last_upgrade_time = static_cast<std::int64_t>(number_at(m, "last_upgrade_time"));
    // The broker's start is the first image's; an upgrade does not make it younger.
    if (const std::uint64_t start = number_at(m, "start_time"); start != 0) metrics.start_time = static_cast<std::int64_t>(start);
    if (m.contains("denials") && m["denials"].is_object()) {
      for (const auto& [reason, count] : m["denials"].items()) {
        if (count.is_number_unsigned()) metrics.denials[reason] = count.get<std::uint64_t>();
      }
    }
    if (const std::uint64_t generation = number_at(saved, "generation"); generation != 0) state.generation = generation;
  }

  // Bind what the policy has and nothing was handed over for.
  (void)state.table.apply(state.policy, state.leases, audit, log);
  return out;
}

Result<std::string> read_carried_text(int memfd, std::size_t max_bytes) {
  std::string text;
  char chunk[65536];
  for (off_t offset = 0;;) {
    ssize_t n = ::pread(memfd, chunk, sizeof chunk, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("reading what the previous image handed over");
    if (n == 0) break;
    text.append(chunk, static_cast<std::size_t>(n));
    offset += n;
    if (text.size() > max_bytes) return Error{0, EFBIG, "what the previous image handed over is too large"};
  }
  return text;
}

Result<nlohmann::json> read_state(int memfd) {
  auto text = read_carried_text(memfd, kMaxStateBytes);
  if (!text) return std::move(text).error();
  auto parsed = nlohmann::json::parse(*text, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) return Error{0, EINVAL, "the handed-over state is not JSON"};
  return parsed;
}

Status write_carried_text(int memfd, std::string_view text, const char* what) {
  std::size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::pwrite(memfd, text.data() + done, text.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return errno_error(std::string("writing ") + what);
    done += static_cast<std::size_t>(n);
  }
  if (::ftruncate(memfd, static_cast<off_t>(text.size())) != 0) {
    return errno_error(std::string("ftruncate (") + what + ")");
  }
  return Ok{};
}

Status write_state(int memfd, const nlohmann::json& state) {
  return write_carried_text(memfd, state.dump(), "the state");
}

}  // namespace sockbroker::broker
