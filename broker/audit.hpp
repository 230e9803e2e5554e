// The audit trail: one JSON object per decision or state change.
//
// Field names follow Tracee's security_socket_bind event (local_addr.sa_family,
// sin_addr, sin_port, sin6_addr, sun_path) so existing detection rules read them.
#pragma once

#include <sys/socket.h>
#include <time.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sockbroker/fd.hpp>

#include "address.hpp"
#include "audit_rate_limit.hpp"
#include "identity.hpp"
#include "journal_sender.hpp"
#include "logger.hpp"
#include "policy.hpp"

namespace sockbroker::broker {

class Audit;

// One event under construction, written straight as JSON text into the
// Audit's reused buffer: a grant costs no allocation and no JSON tree. Fields
// appear in the order they are added, after "ts" and "event". Keys are the
// caller's literals; values are escaped exactly as nlohmann::json dumps them, so
// lines are the same bytes as Audit::emit writes for the same fields.
class AuditLine {
 public:
  AuditLine& field(std::string_view key, std::int64_t value);
  AuditLine& field(std::string_view key, std::uint64_t value);
  AuditLine& field(std::string_view key, int value) { return field(key, static_cast<std::int64_t>(value)); }
  AuditLine& field(std::string_view key, unsigned value) { return field(key, static_cast<std::uint64_t>(value)); }
  AuditLine& field(std::string_view key, bool value);
  AuditLine& field(std::string_view key, std::nullptr_t);
  AuditLine& field(std::string_view key, std::string_view value);
  AuditLine& field(std::string_view key, const char* value) { return field(key, std::string_view(value)); }
  AuditLine& field(std::string_view key, const std::string& value) { return field(key, std::string_view(value)); }
  // Anything else (arrays, nested objects): dumped by nlohmann.
  AuditLine& field(std::string_view key, const nlohmann::ordered_json& value);
  template <class T>
  AuditLine& field(std::string_view key, const std::optional<T>& value) {
    return value ? field(key, *value) : field(key, nullptr);
  }
  // "socket", "local_addr", "type", "reuse_port": what socket_json() holds.
  AuditLine& socket(const policy::SocketSpec& spec);
  // "peer": what peer_json() holds.
  AuditLine& peer(const policy::PeerIdentity& peer);
  // The same, for a caller that sees one peer many times (a connection's is
  // fixed when it connects): the object's text is made into `memo` when it is
  // empty and copied from it after (docs/PERFORMANCE.md, "Where a grant's
  // time goes").
  AuditLine& peer(const policy::PeerIdentity& peer, std::string& memo);

 private:
  friend class Audit;
  explicit AuditLine(Audit& audit) : audit_(audit) {}
  std::string& key(std::string_view name);
  Audit& audit_;
};

class Audit {
 public:
  // destination: "" (stderr, the default), "-" (stdout), "journal"
  // (structured journal entries, one SOCKBROKER_* field per key, sent
  // without waiting: journal_sender.hpp) or an
  // absolute file path, appended to: created 0600 if missing, in a directory
  // made (root-owned 0755) if missing and refused if anyone but root could
  // change it.
  [[nodiscard]] static Result<Audit> open(std::string_view destination);
  // The journal destination, at another socket than journald's (tests).
  [[nodiscard]] static Result<Audit> open_journal(std::string_view socket_path);
  // The audit file a previous broker had open (an upgrade in place).
  [[nodiscard]] static Audit adopt(UniqueFd file);

  // Where the audit's own troubles are told (the trail failing and
  // recovering, suppressed lines); none: not told.
  void set_logger(spdlog::logger* log) noexcept { log_ = log; }

  // Stamps `ts` and `event` onto fields and writes one line.
  void emit(std::string_view event, const nlohmann::ordered_json& fields);

  // The fast path: begin() stamps `ts` and `event`, the caller adds fields,
  // commit() writes the line. One line at a time (the broker's loop is
  // single-threaded): begin() discards a line not committed.
  [[nodiscard]] AuditLine begin(std::string_view event);
  void commit(AuditLine& line);

  // When lines reach a file destination. Zero: each line is written before
  // emit()/commit() returns, so before the reply it is about leaves. Otherwise
  // lines are buffered and written together, at the latest `interval` after the
  // first unwritten one (the loop asks flush_deadline() and calls flush()): one
  // write(2) per burst instead of one per grant, which costs the grant path a
  // system call. A broker killed by SIGKILL or a crash loses at most the lines
  // of that interval; stopping normally writes them all. stdout, stderr and the
  // journal are always written line by line.
  void set_flush_interval(std::chrono::milliseconds interval) noexcept { flush_interval_ = interval; }
  // When the loop must call flush(): a batch to write, a write to retry, a
  // suppressed summary due.
  [[nodiscard]] std::optional<std::chrono::steady_clock::time_point> flush_deadline() const noexcept;
  // Writes the summaries due, then every line held (retrying a failing trail).
  void flush();
  // The last flush, before the broker stops or re-executes itself: gives a
  // busy reader what is left of kBusyGrace, then counts the trail as failing
  // if lines still wait, so that they are kept or logged as a failing
  // trail's are rather than dropped with the process.
  void flush_before_exit();

  // Writing fails (disk full, I/O error, a read-only file system, no
  // journald, journald's queue full, a stream socket's buffer full): the
  // trail holds whole lines only, so a line cut short is taken back (a
  // regular file is truncated to its last whole line) or, where it
  // cannot be, the next write starts on a new line. Unwritten lines wait in
  // memory, up to kMaxRetained bytes (lines past it are lost, and counted),
  // and are retried every kRetryInterval and at every flush(); the first
  // write that works writes them and an `audit_resumed` event saying since
  // when and how many lines were lost. Meanwhile failing() is true: with
  // audit_failure = "deny" the broker refuses grants (request_handler.cpp).
  static constexpr std::size_t kMaxRetained = 256 * 1024;
  static constexpr std::chrono::seconds kRetryInterval{1};
  // journald's queue full (EAGAIN) is journald being busy before it is a
  // failure. Just after a stall journald reads a backlog of its own, and its
  // queue stays full for a moment: failing the trail at the first EAGAIN
  // refused grants for that moment, and wrote the broker's backlog only one
  // queue-full per kRetryInterval. So lines may wait up to kBusyGrace for a
  // journald that is behind, retried every kBusyRetry (grants go on
  // meanwhile, as they do while a file's lines wait for --audit-flush-ms);
  // past that the trail is failing. A failing trail whose journald takes
  // lines again is fed every kBusyRetry too, until its backlog is out.
  static constexpr std::chrono::milliseconds kBusyGrace{500};
  static constexpr std::chrono::milliseconds kBusyRetry{10};
  [[nodiscard]] bool failing() const noexcept { return last_error_.has_value(); }
  // The error of the last failed write, while failing.
  [[nodiscard]] const std::optional<Error>& failure() const noexcept { return last_error_; }
  // Unix time (seconds) the trail began failing; 0 when it is not.
  [[nodiscard]] std::int64_t failing_since() const noexcept { return failing() ? failing_since_.tv_sec : 0; }
  // Lines that never reached the destination, since start.
  [[nodiscard]] std::uint64_t lines_lost() const noexcept { return lines_lost_; }
  // Lines waiting in memory to be written.
  [[nodiscard]] std::size_t lines_pending() const noexcept;

  // The per-uid rate limit (audit_rate_limit.hpp): whether a line (and the
  // log line that goes with it) attributed to uid may be written now. What it
  // refuses is counted and summarised by flush() as `suppressed` events.
  [[nodiscard]] bool admit(uid_t uid, const AuditRateLimit::Limits& limits) {
    return limit_.admit(uid, std::chrono::steady_clock::now(), limits);
  }
  // Lines the rate limit dropped since start.
  [[nodiscard]] std::uint64_t suppressed() const noexcept { return limit_.suppressed_total(); }
  // Every pending summary, due or not: before `stop`.
  void emit_suppressed();

  // The file written to, for a handover; -1 for the other destinations.
  [[nodiscard]] int file() const noexcept { return file_.get(); }
  // Whether the trail is standard error, where the log goes too.
  [[nodiscard]] bool shares_the_log() const noexcept { return destination_ == Destination::stderr_stream; }

  // An upgrade in place (upgrade.cpp): the lines this image could not write
  // yet, which the exec would discard, go to the next image, which writes
  // them before any of its own. unwritten(): those lines (starting with the
  // newline that ends one cut short, if any); carry_in(): the next image
  // takes them, before its `start`.
  [[nodiscard]] std::string unwritten() const { return (cut_line_ ? "\n" : "") + pending_; }
  void carry_in(std::string_view lines);

 private:
  friend class AuditLine;
  enum class Destination { file, stdout_stream, stderr_stream, journal };
  Audit(UniqueFd file, Destination destination) : file_(std::move(file)), destination_(destination) {}
  [[nodiscard]] int output() const noexcept;
  // One attempt at writing pending_; records a failure or a recovery.
  void write_out();
  // 0, or the errno of the write that failed; pending_ keeps what was not written.
  [[nodiscard]] int write_pending();
  [[nodiscard]] int send_pending_to_journal();
  // Removes the last `bytes` written from a regular file; false if it cannot.
  [[nodiscard]] bool take_back(std::size_t bytes);
  // lost_before: lines_lost_ before the attempt that failed.
  void note_failure(int err, std::uint64_t lost_before);
  void note_recovery();
  // What an errno means for this destination, as " (...)", or "".
  [[nodiscard]] std::string failure_hint(int err) const;
  void emit_summaries(const std::vector<AuditRateLimit::Summary>& summaries);
  // "2026-11-22T10:00:00.123456Z"
  [[nodiscard]] std::string utc_text(const timespec& when);

  UniqueFd file_;
  Destination destination_;
  std::optional<JournalSender> journal_;  // the journal destination's socket
  spdlog::logger* log_ = nullptr;
  std::string pending_;  // whole lines not written yet
  std::chrono::milliseconds flush_interval_{0};
  std::optional<std::chrono::steady_clock::time_point> first_unwritten_;
  std::optional<Error> last_error_;
  timespec failing_since_{};
  std::uint64_t lost_when_failing_ = 0;  // lines_lost_ when the failure began
  std::chrono::steady_clock::time_point last_attempt_{};
  // Not failing yet, but lines have waited on a busy reader since then.
  std::optional<std::chrono::steady_clock::time_point> busy_since_;
  bool draining_ = false;  // the last attempt hit EAGAIN after writing something
  bool cut_line_ = false;  // a line was cut and could not be taken back: start anew
  std::uint64_t lines_lost_ = 0;
  AuditRateLimit limit_;
  std::string line_;
  std::int64_t stamped_second_ = -1;  // the second line_'s cached date prefix is for
  std::string second_prefix_;         // "2026-11-22T10:00:00"
};

// The "peer" object of an event.
[[nodiscard]] nlohmann::ordered_json peer_json(const policy::PeerIdentity& peer);
// The "local_addr" object of an event, Tracee-style.
[[nodiscard]] nlohmann::ordered_json local_addr_json(const policy::Address& address);
// The fields every event about one policy socket carries.
[[nodiscard]] nlohmann::ordered_json socket_json(const policy::SocketSpec& spec);

}  // namespace sockbroker::broker
