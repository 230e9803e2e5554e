#include "audit.hpp"

#include "journal_sender.hpp"
#include "root_directory.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fcntl.h>
#include <poll.h>

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

// {"sa_family":FAMILY,ADDR_KEY:"TEXT",PORT_KEY:PORT}: an IP local_addr.
void append_ip(std::string& out, std::string_view head, const char* text, std::string_view port_key,
               std::uint16_t port) {
  out += head;
  out += text;
  out += port_key;
  append_int(out, port);
  out += '}';
}

// local_addr_json(address).dump(), written directly: every grant's line has one.
void append_local_addr(std::string& out, const policy::Address& address) {
  switch (address.kind) {
    case policy::Address::Kind::inet4: {
      const auto& in = reinterpret_cast<const sockaddr_in&>(address.storage);
      char text[INET_ADDRSTRLEN] = {};
      ::inet_ntop(AF_INET, &in.sin_addr, text, sizeof text);
      append_ip(out, R"({"sa_family":"AF_INET","sin_addr":")", text, R"(","sin_port":)", ntohs(in.sin_port));
      return;
    }
    case policy::Address::Kind::inet6: {
      const auto& in6 = reinterpret_cast<const sockaddr_in6&>(address.storage);
      char text[INET6_ADDRSTRLEN] = {};
      ::inet_ntop(AF_INET6, &in6.sin6_addr, text, sizeof text);
      append_ip(out, R"({"sa_family":"AF_INET6","sin6_addr":")", text, R"(","sin6_port":)", ntohs(in6.sin6_port));
      return;
    }
    case policy::Address::Kind::unix_path:
    case policy::Address::Kind::unix_abstract:
      out += R"({"sa_family":"AF_UNIX","sun_path":)";
      append_string(out, address.text);
      out += '}';
      return;
  }
  out += "null";
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
// 0, or the errno of the send (journal_sender.hpp).
int send_to_journal(JournalSender& journal, std::string_view line) {
  auto fields = nlohmann::ordered_json::parse(line, nullptr, false);
  if (!fields.is_object()) return 0;  // cannot happen: the line was written as JSON
  const std::string event = fields.value("event", "");
  fields.erase("ts");  // the journal stamps its own time
  std::vector<std::string> entries;
  entries.push_back("MESSAGE=" + std::string(line));
  entries.push_back("SYSLOG_IDENTIFIER=sockbrokerd");
  entries.push_back(std::string("PRIORITY=") + (event == "deny" || event == "bad_request" ? "5" : "6"));
  flatten("SOCKBROKER", fields, entries);
  return journal.send(entries);
}

}  // namespace

Result<Audit> Audit::open_journal(std::string_view socket_path) {
  auto journal = JournalSender::open(socket_path);
  if (!journal) return std::move(journal).error();
  Audit audit(UniqueFd(), Destination::journal);
  audit.journal_.emplace(std::move(*journal));
  return audit;
}

Result<Audit> Audit::open(std::string_view destination) {
  if (destination == "journal") return open_journal(JournalSender::kDefaultSocket);
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

int Audit::write_pending() {
  if (cut_line_) {
    // The last line written was cut and could not be taken back: it ends
    // here, so that every line after it is whole.
    pending_.insert(0, 1, '\n');
    cut_line_ = false;
  }
  std::size_t done = 0;
  int err = 0;
  while (done < pending_.size()) {
    ssize_t n = ::write(output(), pending_.data() + done, pending_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // Disk full, a quota, an I/O error, a closed stderr. A regular file
      // takes what fits, then refuses: n == 0 cannot happen, but would be that.
      err = n < 0 ? errno : ENOSPC;
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  if (err == 0) {
    pending_.clear();
    return 0;
  }
  // Whole lines or nothing: the lines written stay, the one cut short goes.
  const std::size_t newline = done == 0 ? std::string::npos : pending_.rfind('\n', done - 1);
  const std::size_t whole = newline == std::string::npos ? 0 : newline + 1;
  if (done > whole && !take_back(done - whole)) {
    // A pipe or a file someone else writes too: what went out stays out.
    // The rest of that line is dropped, and the next write ends it.
    const std::size_t end = pending_.find('\n', done);
    pending_.erase(0, end == std::string::npos ? pending_.size() : end + 1);
    ++lines_lost_;
    cut_line_ = true;
    return err;
  }
  if (done > whole && log_ != nullptr) {
    log_->debug("the audit trail took {} of a line's bytes, then refused the rest: they were taken back",
                done - whole);
  }
  pending_.erase(0, whole);
  return err;
}

bool Audit::take_back(std::size_t bytes) {
  const int fd = output();
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return false;
  // After a write the offset is where it ended (with O_APPEND too). Only if
  // the file ends there are the last bytes ours: a logrotate copytruncate, or
  // another writer of a shared stderr, must not lose theirs.
  const off_t end = ::lseek(fd, 0, SEEK_CUR);
  if (end < 0 || st.st_size != end || end < static_cast<off_t>(bytes)) return false;
  const off_t cut = end - static_cast<off_t>(bytes);
  if (::ftruncate(fd, cut) != 0) return false;
  // A descriptor without O_APPEND (a stderr redirected with ">") would
  // otherwise write past the end, leaving a hole of zeros.
  (void)::lseek(fd, cut, SEEK_SET);
  return true;
}

int Audit::send_pending_to_journal() {
  std::size_t start = 0;
  while (start < pending_.size()) {
    const std::size_t end = pending_.find('\n', start);
    const int err = send_to_journal(*journal_, std::string_view(pending_).substr(start, end - start));
    if (err == EINVAL || err == EMSGSIZE) {
      // This line, not the journal: retrying it would fail for ever.
      ++lines_lost_;
    } else if (err != 0) {
      // EAGAIN (journald's queue is full), ENOENT or ECONNREFUSED (no
      // journald): this line and the rest wait, as for a full disk.
      pending_.erase(0, start);
      return err;
    }
    start = end + 1;
  }
  pending_.clear();
  return 0;
}

void Audit::write_out() {
  const auto now = std::chrono::steady_clock::now();
  last_attempt_ = now;
  const std::uint64_t lost_before = lines_lost_;
  const std::size_t waiting_before = pending_.size();
  const int err = destination_ == Destination::journal ? send_pending_to_journal() : write_pending();
  // Only the journal's datagrams wait whole: a stream (stdout, stderr) may
  // take part of a line, and what follows on it must not be the rest of a
  // line written later.
  const bool busy = err == EAGAIN && destination_ == Destination::journal;
  draining_ = busy && pending_.size() < waiting_before;
  if (err == 0) {
    busy_since_.reset();
    if (failing()) note_recovery();
    return;
  }
  if (busy && !failing()) {
    // journald behind, not yet a failure (kBusyGrace says why).
    if (!busy_since_) busy_since_ = now;
    if (now - *busy_since_ < kBusyGrace) return;
  }
  busy_since_.reset();
  note_failure(err, lost_before);
}

std::string Audit::failure_hint(int err) const {
  if (destination_ == Destination::journal) {
    if (err == EAGAIN) {
      return " (journald's queue is full, and lines have waited on it for " + std::to_string(kBusyGrace.count()) +
             " ms: it is stopped, or not keeping up)";
    }
    if (err == ENOENT || err == ECONNREFUSED) {
      return std::string(" (no journald listens on ") + JournalSender::kDefaultSocket + ")";
    }
  } else if (err == EAGAIN) {
    return " (the socket it goes to is full: its reader, journald under systemd, is not reading)";
  }
  return "";
}

void Audit::note_failure(int err, std::uint64_t lost_before) {
  const bool began = !failing();
  last_error_ = errno_error("cannot write the audit trail", err);
  if (!began) return;
  ::clock_gettime(CLOCK_REALTIME, &failing_since_);
  lost_when_failing_ = lost_before;  // a line this very attempt cut counts in this outage
  if (log_ != nullptr) {
    log_->error("cannot write the audit trail: {}{}; its lines wait in memory (up to {} KiB) and writing is retried "
                "every {} s; while it fails, grants are refused unless the policy says audit_failure = \"continue\"",
                std::strerror(err), failure_hint(err), kMaxRetained / 1024, kRetryInterval.count());
  }
}

void Audit::note_recovery() {
  const Error error = *last_error_;
  last_error_.reset();
  const std::uint64_t lost = lines_lost_ - lost_when_failing_;
  const std::string since = utc_text(failing_since_);
  if (log_ != nullptr) {
    log_->warn("the audit trail can be written again (failing since {}: {}); {} line(s) lost", since,
               std::strerror(error.sys_errno), lost);
  }
  AuditLine line = begin("audit_resumed");
  line.field("since", since).field("error", std::strerror(error.sys_errno)).field("lines_lost", lost);
  commit(line);
}

void Audit::emit(std::string_view event, const nlohmann::ordered_json& fields) {
  AuditLine line = begin(event);
  if (fields.is_object()) {
    for (const auto& [key, value] : fields.items()) line.field(key, value);
  }
  commit(line);
}

std::string Audit::utc_text(const timespec& when) {
  if (when.tv_sec != stamped_second_) {
    tm parts{};
    ::gmtime_r(&when.tv_sec, &parts);
    char text[32];
    std::size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &parts);
    second_prefix_.assign(text, n);
    stamped_second_ = when.tv_sec;
  }
  std::string out = second_prefix_;
  char micros[] = ".000000Z";
  for (long left = when.tv_nsec / 1000, i = 6; i >= 1; --i, left /= 10) micros[i] = static_cast<char>('0' + left % 10);
  out += micros;
  return out;
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
  if (!failing() && destination_ == Destination::file && pending_.size() + line_.size() + 1 > kWriteBlock) write_out();
  if (failing() && pending_.size() + line_.size() + 1 > kMaxRetained) {
    ++lines_lost_;
    return;
  }
  pending_ += line_;
  pending_ += '\n';
  // While failing, lines wait for the next retry (flush_deadline). A file
  // waits for the flush interval (one write per burst of grants); stdout,
  // stderr and the journal take each line as it comes.
  if (failing()) return;
  if (destination_ != Destination::file || flush_interval_.count() == 0) {
    write_out();
  } else if (!first_unwritten_) {
    first_unwritten_ = std::chrono::steady_clock::now();
  }
}

std::optional<std::chrono::steady_clock::time_point> Audit::flush_deadline() const noexcept {
  std::optional<std::chrono::steady_clock::time_point> next;
  if (failing()) {
    next = last_attempt_ + (draining_ ? std::chrono::steady_clock::duration(kBusyRetry)
                                      : std::chrono::steady_clock::duration(kRetryInterval));
  } else if (busy_since_) {
    next = last_attempt_ + kBusyRetry;
  } else if (first_unwritten_) {
    next = *first_unwritten_ + flush_interval_;
  }
  if (auto due = limit_.next_due(); due && (!next || *due < *next)) next = *due;
  return next;
}

void Audit::flush() {
  emit_summaries(limit_.take_due(std::chrono::steady_clock::now()));
  first_unwritten_.reset();
  if (!pending_.empty() || cut_line_ || failing()) write_out();
}

void Audit::flush_before_exit() {
  flush();
  while (busy_since_ && !failing()) {
    // poll(2) as the sleep: the confined broker's filter has no nanosleep.
    (void)::poll(nullptr, 0, static_cast<int>(kBusyRetry.count()));
    write_out();
  }
}

void Audit::carry_in(std::string_view lines) {
  if (lines.empty()) return;
  pending_.insert(0, lines);
  // They have waited already, on a trail that was failing or about to: a
  // full queue gets no grace (kBusyGrace) for them.
  busy_since_ = std::chrono::steady_clock::now() - kBusyGrace;
  if (!first_unwritten_) first_unwritten_ = std::chrono::steady_clock::now();
}

std::size_t Audit::lines_pending() const noexcept {
  return static_cast<std::size_t>(std::count(pending_.begin(), pending_.end(), '\n'));
}

void Audit::emit_suppressed() { emit_summaries(limit_.take_due(std::chrono::steady_clock::now(), true)); }

void Audit::emit_summaries(const std::vector<AuditRateLimit::Summary>& summaries) {
  if (summaries.empty()) return;
  const auto now = std::chrono::steady_clock::now();
  timespec wall{};
  ::clock_gettime(CLOCK_REALTIME, &wall);
  for (const auto& summary : summaries) {
    // The first dropped line's wall time: now, less how long ago it was.
    const auto ago = std::chrono::duration_cast<std::chrono::nanoseconds>(now - summary.since).count();
    std::int64_t ns = static_cast<std::int64_t>(wall.tv_sec) * 1000000000 + wall.tv_nsec - ago;
    const timespec since{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
    const std::string since_text = utc_text(since);
    AuditLine line = begin("suppressed");
    if (summary.uid) {
      line.field("uid", static_cast<std::uint64_t>(*summary.uid));
    } else {
      line.field("uid", nullptr);
    }
    line.field("count", summary.count).field("since", since_text);
    commit(line);
    if (log_ != nullptr) {
      log_->warn("{}: {} audit event(s) and their log lines dropped since {} (audit_rate_per_uid)",
                 summary.uid ? "uid " + std::to_string(*summary.uid) : std::string("uids past the first 1024"),
                 summary.count, since_text);
    }
  }
}

namespace {

// The fields every event about a socket carries, as socket_json() holds them.
void append_socket_fields(std::string& text, const policy::SocketSpec& spec) {
  text += "\"socket\":";
  append_string(text, spec.name);
  text += ",\"local_addr\":";
  append_local_addr(text, spec.listen);
  text += ",\"type\":";
  append_string(text, to_string(spec.type));
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
          {"type", to_string(spec.type)},
          {"reuse_port", spec.reuse_port}};
}

}  // namespace sockbroker::broker
