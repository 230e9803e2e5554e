// The broker's event loop: one thread, epoll, non-blocking everywhere, so no
// client can stall another. Owns the control socket and every session.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include <sockbroker/fd.hpp>

#include "audit.hpp"
#include "audit_spill.hpp"
#include "broker_state.hpp"
#include "codec.hpp"
#include "descriptor_disposer.hpp"
#include "fd_store.hpp"
#include "logger.hpp"
#include "request_handler.hpp"
#include "session.hpp"

namespace sockbroker::broker {

class Server {
 public:
  // control: a listening SOCK_SEQPACKET socket (created by us or passed by systemd).
  // disposer: where every descriptor a client chose goes (descriptor_disposer.hpp).
  // credentials_from_connect: see ControlSocket.
  Server(UniqueFd control, bool credentials_from_connect, BrokerState& state, Audit& audit, Disposer& disposer,
         spdlog::logger& log);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Serves until SIGTERM or SIGINT (which the caller has blocked, see block_signals).
  [[nodiscard]] Status run();

  // Blocks the signals the loop takes through a signalfd; call before threads exist.
  static Status block_signals();

  [[nodiscard]] std::size_t client_count() const noexcept { return sessions_.size(); }

  // systemd's WatchdogSec (WATCHDOG_USEC): the loop sends WATCHDOG=1 every half
  // interval, from the loop itself, so a wedged loop stops the pings and systemd
  // restarts the broker. Zero: no watchdog.
  void set_watchdog_interval(std::chrono::microseconds interval) noexcept { watchdog_interval_ = interval; }
  // systemd's file descriptor store, kept in step with the table and leases
  // (fd_store.hpp); null: none.
  void set_fd_store(FdStore* store) noexcept { fd_store_ = store; }
  // The file the unwritten audit lines are kept in for a next broker
  // (audit_spill.hpp), kept in step every turn.
  void set_audit_spill(AuditSpill* spill) noexcept { audit_spill_ = spill; }
  // What an upgrade in place runs (upgrade.hpp), given the control socket:
  // returns only if the new image could not be executed. Unset: upgrades are
  // refused.
  using Upgrader = std::function<Error(int control)>;
  void set_upgrader(Upgrader upgrader) { upgrader_ = std::move(upgrader); }

 private:
  // How a connection ends, which decides whether the broker may close it
  // itself: only when nothing the client queued can still be on it.
  enum class Ending {
    end_of_stream,  // the client hung up and its queue is empty
    after_reply,    // a misbehaving client answered: stop reading, then close
    unread,         // anything else: what it queued is unknown
  };

  void accept_clients();
  // Whether `session` may be served in this loop turn (kRequestsPerUidPerTurn).
  bool within_turn_budget(const Session& session);
  // Admits a connection as a session. Its token if its first request is
  // already queued (accept_clients serves it once the batch is accepted).
  std::optional<std::uint64_t> admit(UniqueFd connection);
  void serve(Session& session, std::uint32_t events);
  void flush_pending(Session& session);
  void reply(Session& session, Response response);
  void close_session(Session& session, Ending ending);
  void retire_connection(UniqueFd connection, Ending ending);
  void touch(Session& session);
  void expire_idle_sessions();
  [[nodiscard]] int milliseconds_to_next_deadline() const;
  [[nodiscard]] bool handle_signals();  // false: stop serving
  void pet_watchdog();
  void watch(Session& session, std::uint32_t events);
  void watch_holder(Holder& holder);
  // What the loop derives from the policy in force, once per reload: clients
  // may attach a namespace descriptor while (and only while) it has a
  // netns = "request" socket; callers' executables are read only while the
  // broker can (CAP_SYS_PTRACE, which confinement keeps for `executable` rules).
  void follow_policy_generation();
  void holder_exited(Holder& holder);
  // SIGUSR2 or `sockbroker upgrade`: every session is handed to the disposer
  // (clients reconnect to the new image), then the upgrader runs.
  void upgrade();
  // Answers a `watch`: the session leaves the idle order for good.
  void start_watching(Session& session);
  // Tells the watching sessions of the holders a revoke, reload or repair
  // reached, before the socket is shut down (LeaseTable::on_grants_ended).
  void tell_holders(const std::string& socket, const std::vector<pid_t>& shut_down,
                    const std::vector<pid_t>& members_held);
  // False if it must wait (the watcher's queue is full): never closes a session.
  bool send_notice_now(Session& session, const proto::Notice& notice);
  // At the end of a turn, the notices tell_holders() could not send at once.
  void tell_deferred_notices();
  void send_notice(Session& session, proto::Notice notice);
  void keep_untold(pid_t pid, proto::Notice notice);

  UniqueFd control_;
  bool credentials_from_connect_;
  UniqueFd epoll_;
  UniqueFd signals_;
  UniqueFd spare_fd_;  // released to accept-and-drop when out of descriptors
  BrokerState& state_;
  Audit& audit_;
  Disposer& disposer_;
  spdlog::logger& log_;
  RequestHandler handler_;

  std::unordered_map<Session*, std::unique_ptr<Session>> sessions_;
  std::unordered_map<std::uint64_t, Session*> session_tokens_;  // what epoll events name
  std::uint64_t next_session_serial_ = 1;
  std::unordered_map<uid_t, std::uint32_t> sessions_per_uid_;
  // Datagrams served per uid in the current loop turn (a handful of uids).
  std::vector<std::pair<uid_t, int>> served_this_turn_;
  std::list<Session*> idle_order_;  // earliest deadline first (all timeouts are equal)
  proto::DatagramBuffer buffer_;    // one request at a time: the loop is single-threaded
  std::uint64_t followed_generation_ = 0;  // the policy generation follow_policy_generation() followed
  bool executables_readable_ = false;         // CAP_SYS_PTRACE effective (confinement.hpp)
  std::chrono::microseconds watchdog_interval_{0};
  Clock::time_point next_watchdog_{};
  FdStore* fd_store_ = nullptr;
  AuditSpill* audit_spill_ = nullptr;
  Upgrader upgrader_;
  // Notices for holders that were not watching when told (a supervisor
  // reconnecting after a restart or an upgrade): delivered when that very
  // process (pid and start time) sends `watch`, forgotten after kUntoldFor.
  struct Untold {
    std::uint64_t start_time = 0;
    Clock::time_point since;
    std::vector<proto::Notice> notices;
  };
  std::unordered_map<pid_t, Untold> untold_;
  std::vector<std::pair<std::uint64_t, proto::Notice>> deferred_notices_;  // session token, notice
};


}  // namespace sockbroker::broker
