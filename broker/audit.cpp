#include "audit.hpp"

#include "root_directory.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <fcntl.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <vector>

namespace sockbroker::broker {
namespace {

// Lines are written in blocks of at most this many bytes, each ending with a
// whole line: a crash never leaves half of one.
constexpr std::size_t kWriteBlock = 64 * 1024;

constexpr auto kDumpErrors = nlohmann::ordered_json::error_handler_t::replace;

// A JSON string exactly as nlohmann::json::dump writes it (ensure_ascii off,
// invalid UTF-8 replaced). Nothing in printable ASCII but '"' and '\\' is
// escaped by it, so such strings (names, paths, units: nearly all) are copied
// as they are; anything else goes through nlohmann.
void append_string(std::string& out, std::string_view text) {
  const bool plain = std::all_of(text.begin(), text.end(), [](unsigned char c) {
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
  });
  if (plain) {
    out += '"';
    out += text;
    out += '"';
    return;
  }
  out += nlohmann::ordered_json(std::string(text)).dump(-1, ' ', false, kDumpErrors);
}

// std::to_chars: fmt's back_inserter into a std::string goes a character at a time.
template <class Int>
void append_int(std::string& out, Int value) {
  char digits[24];
  auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
  out.append(digits, end);
}

void append_local_addr(std::string& out, const policy::Address& address) {
  out += local_addr_json(address).dump(-1, ' ', false, kDumpErrors);
}

void append_peer(std::string& out, const policy::PeerIdentity& peer) {
  out += "{\"pid\":";
  append_int(out, peer.pid);
  out += ",\"uid\":";
  append_int(out, peer.uid);
  out += ",\"gid\":";
  append_int(out, peer.gid);
  out += ",\"unit\":";
  if (peer.unit) {
    append_string(out, *peer.unit);
  } else {
    out += "null";
  }
  out += ",\"exe\":";
  if (peer.executable) {
    append_string(out, *peer.executable);
  } else {
    out += "null";
  }
  out += '}';
}

// SOCKBROKER_PEER_UID=33 for {"peer":{"uid":33}}: journal field names are
// upper-case, flat, and [A-Z0-9_].
void flatten(const std::string& prefix, const nlohmann::ordered_json& value, std::vector<std::string>& out) {
  if (value.is_object()) {
    for (const auto& [key, child] : value.items()) {
      std::string name = prefix + "_" + key;
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) {
        return std::isalnum(c) ? static_cast<char>(std::toupper(c)) : '_';
      });
      flatten(name, child, out);
    }
    return;
  }
  out.push_back(prefix + "=" + (value.is_string() ? value.get<std::string>() : value.dump()));
}

// The journal is not the fast path: the line is parsed back into its fields.
void send_to_journal(const std::string& line) {
  auto fields = nlohmann::ordered_json::parse(line, nullptr, false);
  if (!fields.is_object()) return;  // cannot happen: the line was written as JSON
  const std::string event = fields.value("event", "");
  fields.erase("ts");  // the journal stamps its own time
  std::vector<std::string> entries;
  entries.push_back("MESSAGE=" + line);
  entries.push_back("SYSLOG_IDENTIFIER=sockbrokerd");
  entries.push_back(std::string("PRIORITY=") + (event == "deny" || event == "bad_request" ? "5" : "6"));
  flatten("SOCKBROKER", fields, entries);
  std::vector<iovec> iov;
  iov.reserve(entries.size());
  for (auto& entry : entries) iov.push_back(iovec{entry.data(), entry.size()});
  // Best effort by design: a journal hiccup must not stop the broker serving.
  (void)::sd_journal_sendv(iov.data(), static_cast<int>(iov.size()));
}

}  // namespace

Result<Audit> Audit::open(std::string_view destination) {
  if (destination == "journal") return Audit(UniqueFd(), Destination::journal);
  if (destination.empty()) return Audit(UniqueFd(), Destination::stderr_stream);
  if (destination == "-") return Audit(UniqueFd(), Destination::stdout_stream);
  const std::string path(destination);
  const std::size_t slash = path.rfind('/');
  if (path[0] != '/' || slash == std::string::npos) {
    return Error{0, EINVAL, "audit destination \"" + path + "\" must be an absolute path, \"journal\" or \"-\""};
  }
  // The directory is made if missing (root-owned 0755) and must be root's
  // alone: the broker writes the file as root.
  auto parent = open_trusted_directory(slash == 0 ? "/" : path.substr(0, slash));
  if (!parent) {
    Error e = std::move(parent).error();
    e.message = "cannot open audit destination \"" + path + "\": " + e.message;
    return e;
  }
  // Created 0600: the trail names every caller of the broker.
  UniqueFd file(::openat(parent->get(), path.substr(slash + 1).c_str(),
                         O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!file) return errno_error("cannot open audit destination \"" + path + "\"");
  return Audit(std::move(file), Destination::file);
}

Audit Audit::adopt(UniqueFd file) { return Audit(std::move(file), Destination::file); }

int Audit::output() const noexcept {
  switch (destination_) {
    case Destination::file: return file_.get();
    case Destination::stdout_stream: return STDOUT_FILENO;
    case Destination::stderr_stream: return STDERR_FILENO;
    case Destination::journal: return -1;
  }
  return -1;
}

void Audit::write_out() {
  std::size_t done = 0;
  while (done < pending_.size()) {
    ssize_t n = ::write(output(), pending_.data() + done, pending_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // Disk full, a read-only file system, a closed stderr: lines are lost,
      // and the broker is told (failed()), which may refuse grants meanwhile.
      last_error_ = errno_error("writing the audit trail", n < 0 ? errno : ENOSPC);
      ++lines_lost_;
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  if (done == pending_.size()) last_error_.reset();
  pending_.clear();
}

void Audit::emit(std::string_view event, const nlohmann::ordered_json& fields) {
  AuditLine line = begin(event);
  if (fields.is_object()) {
    for (const auto& [key, value] : fields.items()) line.field(key, value);
  }
  commit(line);
}

AuditLine Audit::begin(std::string_view event) {
  // "2026-11-22T10:00:00.123456Z": UTC with microseconds, as the contract
  // shows. The date and time of day are formatted once per second.
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  if (now.tv_sec != stamped_second_) {
    tm parts{};
    ::gmtime_r(&now.tv_sec, &parts);
    char text[32];
    std::size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &parts);
    second_prefix_.assign(text, n);
    stamped_second_ = now.tv_sec;
  }
  line_.clear();
  line_ += "{\"ts\":\"";
  line_ += second_prefix_;
  char micros[] = ".000000Z";
  for (long left = now.tv_nsec / 1000, i = 6; i >= 1; --i, left /= 10) micros[i] = static_cast<char>('0' + left % 10);
  line_ += micros;
  line_ += "\",\"event\":";
  append_string(line_, event);
  return AuditLine(*this);
}

void Audit::commit(AuditLine& line) {
  (void)line;  // its text is line_
  line_ += '}';
  if (destination_ == Destination::journal) {
    send_to_journal(line_);
    return;
  }
  if (pending_.size() + line_.size() + 1 > kWriteBlock) write_out();
  pending_ += line_;
  pending_ += '\n';
  // A file waits for the flush interval (one write per burst of grants);
  // stdout and stderr take each line as it comes.
  if (destination_ != Destination::file || flush_interval_.count() == 0) {
    write_out();
  } else if (!first_unwritten_) {
    first_unwritten_ = std::chrono::steady_clock::now();
  }
}

std::optional<std::chrono::steady_clock::time_point> Audit::flush_deadline() const noexcept {
  if (!first_unwritten_) return std::nullopt;
  return *first_unwritten_ + flush_interval_;
}

void Audit::flush() {
  first_unwritten_.reset();
  if (!pending_.empty()) write_out();
}

namespace {

// The fields every event about a socket carries, as socket_json() holds them.
void append_socket_fields(std::string& text, const policy::SocketSpec& spec) {
  text += "\"socket\":";
  append_string(text, spec.name);
  text += ",\"local_addr\":";
  append_local_addr(text, spec.listen);
  text += ",\"type\":";
  append_string(text, proto::to_string(spec.type));
  text += spec.reuse_port ? ",\"reuse_port\":true" : ",\"reuse_port\":false";
}

}  // namespace

std::string& AuditLine::key(std::string_view name) {
  std::string& out = audit_.line_;
  out += ',';
  append_string(out, name);
  out += ':';
  return out;
}

AuditLine& AuditLine::field(std::string_view name, std::int64_t value) {
  append_int(key(name), value);
  return *this;
}

AuditLine& AuditLine::field(std::string_view name, std::uint64_t value) {
  append_int(key(name), value);
  return *this;
}

AuditLine& AuditLine::field(std::string_view name, bool value) {
  key(name) += value ? "true" : "false";
  return *this;
}

AuditLine& AuditLine::field(std::string_view name, std::nullptr_t) {
  key(name) += "null";
  return *this;
}

AuditLine& AuditLine::field(std::string_view name, std::string_view value) {
  append_string(key(name), value);
  return *this;
}

AuditLine& AuditLine::field(std::string_view name, const nlohmann::ordered_json& value) {
  if (value.is_string()) return field(name, std::string_view(value.get_ref<const std::string&>()));
  key(name) += value.dump(-1, ' ', false, kDumpErrors);
  return *this;
}

AuditLine& AuditLine::socket(const policy::SocketSpec& spec) {
  std::string& out = audit_.line_;
  out += ',';
  append_socket_fields(out, spec);
  return *this;
}

AuditLine& AuditLine::peer(const policy::PeerIdentity& peer) {
  append_peer(key("peer"), peer);
  return *this;
}

AuditLine& AuditLine::peer(const policy::PeerIdentity& peer, std::string& memo) {
  if (memo.empty()) append_peer(memo, peer);
  key("peer") += memo;
  return *this;
}

nlohmann::ordered_json peer_json(const policy::PeerIdentity& peer) {
  nlohmann::ordered_json out{{"pid", peer.pid}, {"uid", peer.uid}, {"gid", peer.gid}};
  out["unit"] = peer.unit ? nlohmann::ordered_json(*peer.unit) : nlohmann::ordered_json(nullptr);
  out["exe"] = peer.executable ? nlohmann::ordered_json(*peer.executable) : nlohmann::ordered_json(nullptr);
  return out;
}

nlohmann::ordered_json local_addr_json(const policy::Address& address) {
  switch (address.kind) {
    case policy::Address::Kind::inet4: {
      const auto& in = reinterpret_cast<const sockaddr_in&>(address.storage);
      char text[INET_ADDRSTRLEN] = {};
      ::inet_ntop(AF_INET, &in.sin_addr, text, sizeof text);
      return {{"sa_family", "AF_INET"}, {"sin_addr", text}, {"sin_port", ntohs(in.sin_port)}};
    }
    case policy::Address::Kind::inet6: {
      const auto& in6 = reinterpret_cast<const sockaddr_in6&>(address.storage);
      char text[INET6_ADDRSTRLEN] = {};
      ::inet_ntop(AF_INET6, &in6.sin6_addr, text, sizeof text);
      return {{"sa_family", "AF_INET6"}, {"sin6_addr", text}, {"sin6_port", ntohs(in6.sin6_port)}};
    }
    case policy::Address::Kind::unix_path:
    case policy::Address::Kind::unix_abstract:
      return {{"sa_family", "AF_UNIX"}, {"sun_path", address.text}};
  }
  return nullptr;
}

nlohmann::ordered_json socket_json(const policy::SocketSpec& spec) {
  return {{"socket", spec.name},
          {"local_addr", local_addr_json(spec.listen)},
          {"type", proto::to_string(spec.type)},
          {"reuse_port", spec.reuse_port}};
}

}  // namespace sockbroker::broker
