#include "audit.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <spdlog/formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

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

// Socket specs whose fields are remembered: more than any sane policy holds at
// once; past it the memory is simply started afresh (specs of old generations
// are never asked for again).
constexpr std::size_t kMaxRememberedSockets = 65536;

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

// An audit line is finished JSON: the sink gets it and a newline, nothing
// else. spdlog's own pattern formatter ("%v") would still work out the time,
// level and padding of every line only to print none of them.
class LineFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    dest.append(msg.payload.data(), msg.payload.data() + msg.payload.size());
    dest.push_back('\n');
  }
  [[nodiscard]] std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<LineFormatter>(); }
};

}  // namespace

Result<Audit> Audit::open(std::string_view destination) {
  try {
    // _st sinks: only the broker's one loop thread writes audit lines.
    std::shared_ptr<spdlog::logger> lines;
    bool buffered = false;
    std::size_t buffer_capacity = 0;
    if (destination == "journal") {
      return Audit(nullptr);
    } else if (destination.empty()) {
      lines = std::make_shared<spdlog::logger>("audit", std::make_shared<spdlog::sinks::stderr_sink_st>());
    } else if (destination == "-") {
      lines = std::make_shared<spdlog::logger>("audit", std::make_shared<spdlog::sinks::stdout_sink_st>());
    } else {
      lines = std::make_shared<spdlog::logger>(
          "audit", std::make_shared<spdlog::sinks::basic_file_sink_st>(std::string(destination), false));
      buffered = true;
      // glibc gives a FILE a buffer of the file's st_blksize, or BUFSIZ when
      // that is larger or unknown (libio/filedoalloc.c). Lines are flushed
      // before they would overflow it, so that stdio never writes half a line.
      struct stat st {};
      buffer_capacity = BUFSIZ;
      if (::stat(std::string(destination).c_str(), &st) == 0 && st.st_blksize > 0 && st.st_blksize < BUFSIZ) {
        buffer_capacity = static_cast<std::size_t>(st.st_blksize);
      }
    }
    lines->set_formatter(std::make_unique<LineFormatter>());
    lines->set_level(spdlog::level::info);
    // Written when commit() or the loop says so (set_flush_interval), not by spdlog.
    lines->flush_on(spdlog::level::off);
    Audit audit(std::move(lines));
    audit.buffered_ = buffered;
    audit.buffer_capacity_ = buffer_capacity;
    return audit;
  } catch (const spdlog::spdlog_ex& e) {
    return Error{0, 0, "cannot open audit destination \"" + std::string(destination) + "\": " + e.what()};
  }
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
  if (!lines_) {
    send_to_journal(line_);
    return;
  }
  // Each write(2) ends with a whole line, so that a crash never leaves half of one.
  const std::size_t bytes = line_.size() + 1;
  if (buffered_ && unwritten_bytes_ + bytes > buffer_capacity_) flush();
  // Logged as it is, not as a format string: the line holds the caller's bytes.
  lines_->log(spdlog::level::info, spdlog::string_view_t(line_.data(), line_.size()));
  if (!buffered_) return;  // stdout and stderr sinks write every line themselves
  unwritten_bytes_ += bytes;
  if (flush_interval_.count() == 0) {
    flush();
  } else if (!first_unwritten_) {
    first_unwritten_ = std::chrono::steady_clock::now();
  }
}

std::optional<std::chrono::steady_clock::time_point> Audit::flush_deadline() const noexcept {
  if (!first_unwritten_) return std::nullopt;
  return *first_unwritten_ + flush_interval_;
}

void Audit::flush() {
  if (unwritten_bytes_ == 0) return;
  unwritten_bytes_ = 0;
  first_unwritten_.reset();
  lines_->flush();
}

const std::string& Audit::socket_fields(const policy::SocketSpec& spec) {
  auto it = sockets_.find(&spec);
  if (it != sockets_.end()) {
    const SocketFields& known = it->second;
    // The spec at this address may be a newer one (a reload): the remembered
    // text serves only if every field it was made from is unchanged.
    if (known.name == spec.name && known.type == spec.type && known.reuse_port == spec.reuse_port &&
        known.listen.kind == spec.listen.kind && known.listen.length == spec.listen.length &&
        known.listen.text == spec.listen.text &&
        std::memcmp(&known.listen.storage, &spec.listen.storage, sizeof spec.listen.storage) == 0) {
      return known.text;
    }
  }
  if (sockets_.size() >= kMaxRememberedSockets) sockets_.clear();
  SocketFields made{spec.name, spec.listen, spec.type, spec.reuse_port, {}};
  std::string& text = made.text;
  text += "\"socket\":";
  append_string(text, spec.name);
  text += ",\"local_addr\":";
  append_local_addr(text, spec.listen);
  text += ",\"type\":";
  append_string(text, proto::to_string(spec.type));
  text += spec.reuse_port ? ",\"reuse_port\":true" : ",\"reuse_port\":false";
  return sockets_.insert_or_assign(&spec, std::move(made)).first->second.text;
}

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
  out += audit_.socket_fields(spec);
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
