#include "server.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>

#include "confinement.hpp"
#include "control_socket.hpp"
#include "datagram.hpp"
#include "epoll_timeout.hpp"
#include "peer_identity.hpp"
#include "reload.hpp"
#include "shared_socket_repair.hpp"

namespace sockbroker::broker {
namespace {

constexpr int kMaxEvents = 64;
constexpr int kAcceptsPerWake = 4;
constexpr int kRequestsPerUidPerTurn = 4;

constexpr std::uint64_t kControlToken = make_token(WatchKind::control, 0);
constexpr std::uint64_t kSignalToken = make_token(WatchKind::signal, 0);

constexpr int kMaxDrainedBeforeClose = 65536;
// Untold notices: how long they wait for their holder to watch again (a
// supervisor reconnects within 5 s), and how many are kept at most.
constexpr auto kUntoldFor = std::chrono::seconds(30);
constexpr std::size_t kMaxUntoldHolders = 4096;
constexpr std::size_t kMaxUntoldPerHolder = 16;
// Descriptors queued for the disposer past which requests carrying more are
// refused unread (see serve()); main.cpp's descriptor budget includes it.
constexpr std::size_t kDisposerHighWater = 4096;

}  // namespace

Status Server::block_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGUSR2);
  if (::sigprocmask(SIG_BLOCK, &set, nullptr) != 0) return errno_error("sigprocmask");
  // Replies use MSG_NOSIGNAL; this covers any other write to a vanished peer.
  if (::signal(SIGPIPE, SIG_IGN) == SIG_ERR) return errno_error("signal(SIGPIPE)");
  return Ok{};
}

Server::Server(UniqueFd control, bool credentials_from_connect, BrokerState& state, Audit& audit, Disposer& disposer,
               spdlog::logger& log)
    : control_(std::move(control)),
      credentials_from_connect_(credentials_from_connect),
      state_(state),
      audit_(audit),
      disposer_(disposer),
      log_(log),
      handler_(state, audit, log) {
  state_.leases.on_grants_ended([this](const std::string& socket, const std::vector<pid_t>& shut_down,
                                       const std::vector<pid_t>& members_held) {
    tell_holders(socket, shut_down, members_held);
  });
}

Server::~Server() {
  state_.leases.on_grants_ended(nullptr);
  // Sessions left (a stop, an error): their connections may hold what
  // clients queued; they go the way of every other client descriptor.
  while (!sessions_.empty()) close_session(*sessions_.begin()->second, Ending::unread);
  disposer_.flush(log_);
}

Status Server::run() {
  epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) return errno_error("epoll_create1");

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGUSR2);
  signals_.reset(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!signals_) return errno_error("signalfd");

  spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!spare_fd_) return errno_error("open /dev/null");

  if (int flags = ::fcntl(control_.get(), F_GETFL); flags < 0 || ::fcntl(control_.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    return errno_error("fcntl(O_NONBLOCK) on the control socket");
  }

  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = kControlToken;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, control_.get(), &event) != 0) return errno_error("epoll_ctl(control)");
  event.data.u64 = kSignalToken;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, signals_.get(), &event) != 0) return errno_error("epoll_ctl(signalfd)");

  // Holders a previous broker handed over (handover.hpp).
  std::vector<Holder*> adopted;
  state_.leases.for_each_holder([&](Holder& holder) { adopted.push_back(&holder); });
  for (Holder* holder : adopted) watch_holder(*holder);

  std::array<epoll_event, kMaxEvents> events;
  if (watchdog_interval_.count() > 0) pet_watchdog();
  for (;;) {
    follow_policy_generation();
    state_.table.make_spares(log_);
    int n = ::epoll_wait(epoll_.get(), events.data(), kMaxEvents, milliseconds_to_next_deadline());
    served_this_turn_.clear();
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("epoll_wait");
    }
    // New connections are taken after the batch's other events: a client
    // that hung up and connected again must have its old session closed
    // before the new one is counted against max_clients_per_uid. Epoll's
    // order does not promise that, since a level-triggered control socket
    // stays first in the ready list from one wake-up to the next.
    bool accept_due = false;
    for (int i = 0; i < n; ++i) {
      const std::uint64_t token = events[i].data.u64;
      switch (kind_of(token)) {
        case WatchKind::control:
          accept_due = true;
          break;
        case WatchKind::signal:
          if (!handle_signals()) return Ok{};
          break;
        case WatchKind::holder:
          // Gone already if an earlier event of this batch released it.
          if (Holder* holder = state_.leases.by_token(token)) holder_exited(*holder);
          break;
        case WatchKind::session:
          if (auto it = session_tokens_.find(token); it != session_tokens_.end() && within_turn_budget(*it->second)) {
            serve(*it->second, events[i].events);
          }
          break;
      }
    }
    if (accept_due) accept_clients();
    tell_deferred_notices();
    if (state_.upgrade_requested) upgrade();
    expire_idle_sessions();
    disposer_.flush(log_);
    const auto now = Clock::now();
    if (auto due = state_.table.next_retry(); due && now >= *due) {
      state_.table.retry_failed(now, audit_, log_);
      if (fd_store_ != nullptr) fd_store_->mark_stale();
    }
    if (auto due = next_shared_socket_check(state_); due && now >= *due) {
      check_shared_sockets(state_, now, audit_, log_);
      if (fd_store_ != nullptr) fd_store_->mark_stale();  // a repair may have bound a socket afresh
    }
    if (fd_store_ != nullptr) fd_store_->sync(state_, log_);
    if (auto due = audit_.flush_deadline(); due && now >= *due) audit_.flush();
    if (fd_store_ != nullptr) {
      fd_store_->keep_unwritten_audit(audit_, log_);
      state_.metrics.audit_kept_in_store = fd_store_->unwritten_audit_memfd() >= 0;
    }
    if (audit_spill_ != nullptr) {
      audit_spill_->keep(audit_, log_);
      std::string& shown = state_.metrics.audit_kept_in_file;
      if (audit_spill_->holds_lines() == shown.empty()) shown = audit_spill_->holds_lines() ? audit_spill_->path() : "";
    }
    if (watchdog_interval_.count() > 0 && now >= next_watchdog_) pet_watchdog();
  }
}

void Server::pet_watchdog() {
  ::sd_notify(0, "WATCHDOG=1");
  // Half the interval, as sd_watchdog_enabled(3) advises: one late wake-up
  // must not cost the broker its life.
  next_watchdog_ = Clock::now() + watchdog_interval_ / 2;
}

bool Server::handle_signals() {
  signalfd_siginfo info{};
  while (::read(signals_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT) {
      log_.info("received {}, stopping", ::strsignal(static_cast<int>(info.ssi_signo)));
      return false;
    }
    if (info.ssi_signo == SIGUSR2) {
      log_.info("SIGUSR2: upgrading in place");
      state_.upgrade_requested = true;
    }
    if (info.ssi_signo == SIGHUP) {
      log_.info("SIGHUP: reloading the policy");
      auto outcome = reload_policy(state_, audit_, log_);
      state_.metrics.reloaded(outcome.applied, outcome.message);
      if (fd_store_ != nullptr) fd_store_->mark_stale();
    }
  }
  return true;
}

bool Server::within_turn_budget(const Session& session) {
  // A few datagrams per uid per turn, so that one uid's hundred ready
  // connections wait their turn behind another uid's one rather than the
  // other way round. What is skipped stays ready (the watch is
  // level-triggered) and epoll reports it again, after the others.
  for (auto& [uid, served] : served_this_turn_) {
    if (uid == session.peer.uid) return ++served <= kRequestsPerUidPerTurn;
  }
  served_this_turn_.emplace_back(session.peer.uid, 1);
  return true;
}

void Server::accept_clients() {
  // The kernel queues connections in one FIFO for every uid: a connection
  // waits behind every one queued before it, so one uid's flood would keep
  // everyone else's first request waiting (security review 2, item 10). The
  // queue is kept short (control_socket.cpp), admit() makes what a flood
  // sends cheap to turn away (a uid over its limit costs one getsockopt and a
  // short reply), and a few connections are taken per wake-up: enough for a
  // burst, few enough that connected clients' requests come in turn with a
  // flood (the watch is level-triggered). The number is chosen on bench row 11
  // (docs/PERFORMANCE.md, "One uid's flood against another uid").
  //
  // A client sends its request as soon as it is connected, so it is usually
  // queued at accept (admit() peeks anyway): such requests are served in this
  // turn, within their uid's budget, rather than one epoll_wait later, but
  // only once the batch is accepted. Served at once, a client could close and
  // connect again before the next accept4 of the batch, which would find its
  // new connection ahead of the old one's hang-up: counted twice against
  // max_clients_per_uid.
  std::array<std::uint64_t, kAcceptsPerWake> waiting{};
  std::size_t n_waiting = 0;
  for (int attempt = 0; attempt < kAcceptsPerWake; ++attempt) {
    int raw = ::accept4(control_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (raw >= 0) {
      if (auto token = admit(UniqueFd(raw))) waiting[n_waiting++] = *token;
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EMFILE || errno == ENFILE) {
      // Out of descriptors, a pending connection would keep the control socket
      // readable and the loop would spin: free the spare, take one connection,
      // drop it, and go back to serving (accept4 reports EMFILE even when
      // nothing is queued, so retrying here would never end).
      log_.error("out of file descriptors; dropping a connection (raise LimitNOFILE or lower max_clients)");
      spare_fd_.reset();
      UniqueFd dropped(::accept4(control_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      // It may already carry a request with descriptors: not ours to release.
      disposer_.take(std::move(dropped));
      disposer_.flush(log_);
      spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
      break;
    }
    if (errno != EAGAIN) log_.error("accept4: {}", std::strerror(errno));
    break;
  }
  for (std::size_t i = 0; i < n_waiting; ++i) {
    if (auto it = session_tokens_.find(waiting[i]); it != session_tokens_.end() && within_turn_budget(*it->second)) {
      serve(*it->second, EPOLLIN);
    }
  }
}

std::optional<std::uint64_t> Server::admit(UniqueFd connection) {
  auto cred = peer_credentials(connection.get());
  if (!cred) {
    log_.warn("dropping a connection whose identity cannot be read: {}", cred.error().describe());
    return std::nullopt;
  }
  // Gone already with nothing queued (a probe, a client that gave up in the
  // queue): nothing to serve, nothing to count against its uid's limit. Only
  // where every datagram carries credentials does an empty read prove it.
  bool request_waiting = false;
  if (credentials_from_connect_) {
    auto head = proto::peek_datagram(connection.get());
    if (head && *head == proto::Head::end_of_stream) return std::nullopt;
    request_waiting = static_cast<bool>(head);
  }
  // Counted against the limits before anything else is spent on it: a uid
  // over its limit costs the broker one getsockopt and a short reply, not the
  // /proc reads of a full identity (security review 2, item 10).
  const auto& limits = state_.policy.broker;
  std::string refusal;
  if (sessions_.size() >= limits.max_clients) {
    refusal = "max_clients (" + std::to_string(limits.max_clients) + ") connections are open";
  } else if (auto it = sessions_per_uid_.find(cred->uid);
             it != sessions_per_uid_.end() && it->second >= limits.max_clients_per_uid) {
    refusal = "uid " + std::to_string(cred->uid) + " has max_clients_per_uid (" +
              std::to_string(limits.max_clients_per_uid) + ") connections open";
  }
  if (!refusal.empty()) {
    policy::PeerIdentity peer;  // as SO_PEERCRED says: enough to name who was refused
    peer.pid = cred->pid;
    peer.uid = cred->uid;
    peer.gid = cred->gid;
    // Answered synchronously on the fresh socket (its buffer is empty), then closed.
    Response response = handler_.limit_reached(refusal, peer);
    auto size = proto::encode_reply(response.reply, buffer_.span());
    if (size) (void)proto::send_datagram(connection.get(), std::span(buffer_.bytes, *size));
    retire_connection(std::move(connection), Ending::after_reply);
    return std::nullopt;
  }

  auto peer = read_peer(connection.get(), *cred);
  if (!peer) {
    log_.warn("dropping a connection whose identity cannot be read: {}", peer.error().describe());
    return std::nullopt;
  }
  auto session = std::make_unique<Session>();
  if (!credentials_from_connect_) {
    // Made while systemd held the socket without PassCredentials=yes, it may
    // lack SO_PASSCRED (Linux >= 6.16 copies it at connect): set it now, for
    // the requests still to come.
    int on = 0;
    socklen_t length = sizeof on;
    if (::getsockopt(connection.get(), SOL_SOCKET, SO_PASSCRED, &on, &length) != 0 || !on) {
      on = 1;
      (void)::setsockopt(connection.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on);
      session->credentials_reliable = false;
    }
  }
  session->connection = std::move(connection);
  session->peer = std::move(peer->identity);
  session->pidfd = std::move(peer->pidfd);
  session->connector_gone = peer->gone;
  Session& s = *session;

  ++sessions_per_uid_[s.peer.uid];
  s.idle_position = idle_order_.insert(idle_order_.end(), &s);
  s.deadline = Clock::now() + std::chrono::milliseconds(limits.request_timeout_ms);
  s.token = make_token(WatchKind::session, next_session_serial_++);
  session_tokens_.emplace(s.token, &s);
  sessions_.emplace(&s, std::move(session));
  state_.metrics.connected();
  epoll_event event{};
  event.events = EPOLLIN | EPOLLRDHUP;
  event.data.u64 = s.token;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, s.connection.get(), &event) != 0) {
    log_.error("epoll_ctl(EPOLL_CTL_ADD): {}; dropping the connection", std::strerror(errno));
    close_session(s, Ending::unread);
    return std::nullopt;
  }
  return request_waiting ? std::optional<std::uint64_t>(s.token) : std::nullopt;
}

// Only for sessions admit() added: they stay in the set until closed.
void Server::watch(Session& session, std::uint32_t events) {
  epoll_event event{};
  event.events = events;
  event.data.u64 = session.token;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, session.connection.get(), &event) != 0) {
    log_.error("epoll_ctl(EPOLL_CTL_MOD): {}; dropping the connection", std::strerror(errno));
    close_session(session, Ending::unread);
  }
}

void Server::serve(Session& session, std::uint32_t events) {
  if (session.pending) {
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) flush_pending(session);
    return;
  }
  // One datagram per wake-up. A client has at most one request in flight, so
  // a second receive would almost always cost a system call to learn EAGAIN;
  // one that pipelines anyway is served on the next wake-ups (the watch is
  // level-triggered) in turn with everyone else, so it cannot starve them.
  if (disposer_.queued() >= kDisposerHighWater) {
    // The disposer is behind: take no more descriptors into the broker's
    // table (its limit must keep room for a datagram's worth). A client that
    // sends some now is hung up on, and its connection disposed of whole.
    auto head = proto::peek_datagram(session.connection.get());
    if (head && *head == proto::Head::carries_descriptors) {
      log_.warn("the descriptor disposer is behind; hanging up on pid {}, which sends descriptors", session.peer.pid);
      close_session(session, Ending::unread);
      return;
    }
  }
  auto received = proto::receive_datagram(session.connection.get(), buffer_.span(), MSG_DONTWAIT);
  if (!received) {
    if (received.error().sys_errno != EAGAIN) close_session(session, Ending::unread);
    return;
  }
  // Every descriptor the client attached goes to the disposer (or, a
  // namespace, is closed) when the request is answered: the broker keeps
  // none, and never releases one a client chose on this loop (an acquire's
  // network namespace is only lent to the handler for the bind).
  proto::Received& datagram = *received;
  struct RetireReceived {
    Disposer& disposer;
    proto::Received& datagram;
    ~RetireReceived() { disposer.take_received(std::span(datagram.fds)); }
  } retire{disposer_, datagram};
  if (datagram.end_of_stream()) {
    // Without reliable credentials a 0-byte read may be an empty datagram
    // with more queued behind it: not a positive end of the stream.
    close_session(session, session.credentials_reliable ? Ending::end_of_stream : Ending::unread);
    return;
  }
  // The sender of a request that carries no credentials, on a connection
  // that may lack them: its connector, as SO_PEERCRED says (the weaker
  // binding a socket unit without PassCredentials=yes leaves).
  const pid_t sender = datagram.has_credentials || session.credentials_reliable ? datagram.sender_pid : session.peer.pid;
  touch(session);

  Error problem;
  if (datagram.truncated) {
    problem = Error{0, 0, "datagram larger than " + std::to_string(proto::kMaxDatagram) + " bytes"};
  } else if (datagram.control_truncated) {
    problem = Error{0, 0, "too many descriptors attached (ancillary data truncated)"};
  } else if (datagram.fds.size() > 1) {
    problem = Error{0, 0, std::to_string(datagram.fds.size()) +
                              " unexpected descriptor(s) attached; a request carries at most one (a network namespace)"};
  }
  if (!problem.message.empty()) {
    session.close_after_reply = true;
    reply(session, handler_.bad_request(problem, session.peer));
    return;
  }
  auto request = proto::decode_request(std::span<const std::byte>(buffer_.bytes, datagram.size));
  if (!request) {
    session.close_after_reply = true;
    reply(session, handler_.bad_request(request.error(), session.peer));
    return;
  }
  // Exactly one descriptor, with exactly the request that says it sent one.
  const auto* acquire = std::get_if<proto::AcquireRequest>(&*request);
  const bool says_netns = acquire != nullptr && acquire->with_netns;
  if (says_netns != (datagram.fds.size() == 1)) {
    session.close_after_reply = true;
    Error mismatch{0, 0,
                   says_netns ? "the request says a network namespace is attached, but no descriptor arrived"
                              : "1 unexpected descriptor(s) attached (only an acquire with a network namespace carries one)"};
    reply(session, handler_.bad_request(mismatch, session.peer));
    return;
  }
  if (!session.identity_resolved) {
    // A read that cannot succeed is not tried: without CAP_SYS_PTRACE (kept
    // only for an `executable` rule) /proc/PID/exe of a caller fails.
    resolve_process_identity(session.peer, session.pidfd.get(), executables_readable_);
    session.identity_resolved = true;
  }
  if (std::holds_alternative<proto::WatchRequest>(*request)) {
    start_watching(session);
    return;
  }
  // A grant, a reload, a revoke: what the store keeps may have changed.
  if (fd_store_ != nullptr) fd_store_->mark_stale();
  // reply() may close (free) the session: nothing touches it afterwards.
  reply(session, handler_.handle(*request, Caller{session.peer, session.pidfd.get(), sender,
                                                  says_netns ? datagram.fds[0].get() : -1, &session.holder_token,
                                                  &session.audit_peer, session.connector_gone}));
}

void Server::follow_policy_generation() {
  if (followed_generation_ == state_.generation) return;
  followed_generation_ = state_.generation;
  const bool wanted = std::any_of(state_.policy.sockets.begin(), state_.policy.sockets.end(),
                                  [](const policy::SocketSpec& s) { return s.netns == policy::NetnsMode::request; });
  executables_readable_ = can_read_callers_executables();
  // Logged, not fatal: the receive path checks and closes whatever arrives.
  if (auto s = accept_descriptors(control_.get(), wanted); !s) {
    log_.warn("cannot {} descriptors on the control socket: {}", wanted ? "accept" : "refuse", s.error().describe());
  }
}

void Server::watch_holder(Holder& holder) {
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = holder.token;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, holder.pidfd.get(), &event) != 0) {
    // Unwatched, its grants would count forever: release them now instead.
    log_.error("cannot watch the holder pid {}: {}; releasing its grants", holder.pid, std::strerror(errno));
    release_holder(state_, state_.leases.remove(holder));
  }
}

void Server::holder_exited(Holder& holder) {
  log_.debug("holder pid {} exited; releasing {} grant(s)", holder.pid, holder.leases.size());
  release_holder(state_, state_.leases.remove(holder));
  if (fd_store_ != nullptr) fd_store_->mark_stale();
}

void Server::reply(Session& session, Response response) {
  if (response.new_holder != nullptr) watch_holder(*response.new_holder);
  auto size = proto::encode_reply(response.reply, buffer_.span());
  if (!size) {
    log_.error("cannot encode a reply: {}", size.error().message);
    close_session(session, Ending::unread);
    return;
  }
  std::span<const std::byte> bytes(buffer_.bytes, *size);
  int fd = response.fd ? response.fd->get() : -1;
  auto sent = proto::send_datagram(session.connection.get(), bytes, fd);
  if (sent) {
    if (session.close_after_reply) close_session(session, Ending::after_reply);
    return;
  }
  if (sent.error().sys_errno != EAGAIN) {
    close_session(session, Ending::unread);  // the client went away; nothing to tell it
    return;
  }
  session.pending = Session::PendingReply{{bytes.begin(), bytes.end()}, std::move(response.fd)};
  watch(session, EPOLLOUT | EPOLLRDHUP);
}

void Server::flush_pending(Session& session) {
  auto& pending = *session.pending;
  int fd = pending.fd ? pending.fd->get() : -1;
  auto sent = proto::send_datagram(session.connection.get(), pending.bytes, fd);
  if (!sent) {
    if (sent.error().sys_errno != EAGAIN) close_session(session, Ending::unread);
    return;
  }
  session.pending.reset();
  if (session.close_after_reply) {
    close_session(session, Ending::after_reply);
    return;
  }
  touch(session);
  watch(session, EPOLLIN | EPOLLRDHUP);
}

void Server::upgrade() {
  state_.upgrade_requested = false;
  if (!upgrader_) {
    log_.warn("an upgrade in place was asked for, but this broker cannot re-execute itself");
    return;
  }
  // Closing a connection may release what a client queued on it: the
  // disposer's job, and it must have everything before the exec, which
  // would close what is left on this thread.
  // Shut down first: the clients see the end of the stream at once (and
  // reconnect to the new image), though the disposer closes the sockets later.
  for (auto& [session, owned] : sessions_) (void)::shutdown(session->connection.get(), SHUT_RDWR);
  while (!sessions_.empty()) close_session(*sessions_.begin()->second, Ending::unread);
  for (int i = 0; i < 100 && disposer_.backlogged(); ++i) {
    disposer_.flush(log_);
    if (disposer_.backlogged()) (void)::poll(nullptr, 0, 2);
  }
  if (disposer_.backlogged()) {
    log_.error("upgrade in place refused: the descriptor disposer is behind; try again");
    audit_.emit("upgrade_failed", {{"reason", "the descriptor disposer is behind"}});
    return;
  }
  if (fd_store_ != nullptr) {
    fd_store_->mark_stale();
    fd_store_->sync(state_, log_, true);
  }
  audit_.emit_suppressed();
  audit_.emit("upgrade", {{"pid", ::getpid()}, {"generation", state_.generation}});
  audit_.flush_before_exit();
  // Lines the trail could not take yet go to the next image (upgrade.cpp),
  // in the store's memfd when there is one: the store then has them too,
  // should the new image die.
  if (fd_store_ != nullptr) fd_store_->keep_unwritten_audit(audit_, log_, true);
  if (audit_spill_ != nullptr) audit_spill_->keep(audit_, log_, true);
  if (audit_.failing()) {
    log_.warn("upgrading with the audit trail failing: its {} line(s) not yet written go to the new image",
              audit_.lines_pending());
  }
  ::sd_notifyf(0, "RELOADING=1\nSTATUS=upgrading in place");
  const Error failed = upgrader_(control_.get());
  log_.error("upgrade in place failed, serving on with this image: {}", failed.describe());
  audit_.emit("upgrade_failed", {{"reason", failed.describe()}});
  ::sd_notify(0, "READY=1\nSTATUS=upgrade in place failed; serving on");
}

void Server::start_watching(Session& session) {
  if (!session.watching) {
    session.watching = true;
    idle_order_.erase(session.idle_position);
  }
  const std::uint64_t token = session.token;
  const pid_t pid = session.peer.pid;
  reply(session, Response{proto::Outcome{true, "watching: revocations of grants to pid " +
                                                   std::to_string(pid) + " will be told here", {}, {}},
                          nullptr, nullptr});
  // What it missed while it was not watching, if it is the same process.
  auto it = untold_.find(pid);
  if (it == untold_.end()) return;
  Untold untold = std::move(it->second);
  untold_.erase(it);
  if (Clock::now() - untold.since > kUntoldFor || process_start_time(pid) != untold.start_time) return;
  for (auto& notice : untold.notices) {
    auto live = session_tokens_.find(token);  // a failed send closes the session
    if (live == session_tokens_.end() || live->second->pending) return;
    send_notice(*live->second, std::move(notice));
  }
}

void Server::keep_untold(pid_t pid, proto::Notice notice) {
  const auto now = Clock::now();
  std::erase_if(untold_, [&](const auto& entry) { return now - entry.second.since > kUntoldFor; });
  auto it = untold_.find(pid);
  if (it == untold_.end()) {
    if (untold_.size() >= kMaxUntoldHolders) return;
    const std::uint64_t start_time = process_start_time(pid);
    if (start_time == 0) return;  // gone already
    it = untold_.emplace(pid, Untold{start_time, now, {}}).first;
  }
  if (it->second.notices.size() < kMaxUntoldPerHolder) it->second.notices.push_back(std::move(notice));
}

void Server::tell_holders(const std::string& socket, const std::vector<pid_t>& shut_down,
                          const std::vector<pid_t>& members_held) {
  // Called from inside a request, a reload or a repair (LeaseTable::on_grants_ended),
  // before the socket is shut down: nothing here may close a session, which
  // the code that called might still hold. A send that cannot go now waits
  // for the end of the turn; a watcher that has gone is closed by its own
  // hang-up event.
  auto tell = [&](const std::vector<pid_t>& pids, const std::string& message) {
    for (pid_t pid : pids) {
      bool told = false;
      for (auto& [session, owned] : sessions_) {
        if (!session->watching || session->peer.pid != pid) continue;
        told = true;
        proto::Notice notice{socket, message};
        if (session->pending) {
          // One reply waits at most: a watcher that does not read loses notices, not the broker's memory.
          log_.warn("pid {} has not read its last reply; it is not told that \"{}\" was revoked", pid, socket);
          continue;
        }
        if (!send_notice_now(*session, notice)) deferred_notices_.emplace_back(session->token, std::move(notice));
      }
      if (!told) keep_untold(pid, proto::Notice{socket, message});
    }
  };
  tell(shut_down, "the broker shut the socket down (revoked, or replaced by a reload): it accepts nothing more");
  tell(members_held,
       "the socket was revoked (or replaced by a reload); this reuse_port member serves on until closed, "
       "but the broker no longer counts it");
}

bool Server::send_notice_now(Session& session, const proto::Notice& notice) {
  // Its own buffer: the request being handled may still be read from buffer_.
  proto::DatagramBuffer buffer;
  auto size = proto::encode_reply(proto::Reply{notice}, buffer.span());
  if (!size) return false;
  auto sent = proto::send_datagram(session.connection.get(), std::span<const std::byte>(buffer.bytes, *size), -1);
  if (!sent && sent.error().sys_errno == EAGAIN) return false;
  if (sent) log_.info("telling pid {} that its grant of \"{}\" ended", session.peer.pid, notice.socket);
  return true;  // or the watcher went away, and its hang-up will close the session
}

void Server::tell_deferred_notices() {
  if (deferred_notices_.empty()) return;
  auto deferred = std::move(deferred_notices_);
  deferred_notices_.clear();
  for (auto& [token, notice] : deferred) {
    auto it = session_tokens_.find(token);  // tokens, not pointers: a failed send closes (frees) its session
    if (it == session_tokens_.end() || it->second->pending) continue;
    send_notice(*it->second, std::move(notice));
  }
}

void Server::send_notice(Session& session, proto::Notice notice) {
  log_.info("telling pid {} that its grant of \"{}\" ended", session.peer.pid, notice.socket);
  Response response{std::move(notice), nullptr, nullptr};
  reply(session, std::move(response));
}

void Server::touch(Session& session) {
  if (session.watching) return;  // no deadline
  session.deadline = Clock::now() + std::chrono::milliseconds(state_.policy.broker.request_timeout_ms);
  idle_order_.splice(idle_order_.end(), idle_order_, session.idle_position);
}

void Server::retire_connection(UniqueFd connection, Ending ending) {
  if (ending == Ending::end_of_stream) {
    // The client hung up and its queue is empty: nothing of its is released here.
    connection.reset();
    return;
  }
  // From here the client's sends fail (EPIPE): the queue only shrinks.
  (void)::shutdown(connection.get(), SHUT_RD);
  // A reply may wait in the client's queue: unread datagrams left on ours
  // would reset the connection (ECONNRESET) before the client reads it, so
  // they are read and dropped first, up to one that carries descriptors:
  // taking that would make the broker the holder of what the client chose.
  // The queue is finite (the client can no longer send); the bound is a
  // guard, far above what a socket buffer holds.
  for (int i = 0; i < kMaxDrainedBeforeClose; ++i) {
    auto head = proto::peek_datagram(connection.get());
    if (!head || *head == proto::Head::carries_descriptors) break;
    if (*head == proto::Head::end_of_stream) {
      connection.reset();  // positively empty: closing it releases nothing of the client's
      return;
    }
    (void)proto::receive_datagram(connection.get(), buffer_.span(), MSG_DONTWAIT);
  }
  // What is left queued may carry descriptors: the disposer closes it.
  disposer_.take(std::move(connection));
}

void Server::close_session(Session& session, Ending ending) {
  if (ending != Ending::end_of_stream) {
    // Handed on, the socket outlives this session: take it out of the epoll
    // set now (only the last close would).
    (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, session.connection.get(), nullptr);
  }
  retire_connection(std::move(session.connection), ending);
  if (!session.watching) idle_order_.erase(session.idle_position);
  if (auto it = sessions_per_uid_.find(session.peer.uid); it != sessions_per_uid_.end() && --it->second == 0) {
    sessions_per_uid_.erase(it);
  }
  session_tokens_.erase(session.token);
  sessions_.erase(&session);
  state_.metrics.disconnected();
}

void Server::expire_idle_sessions() {
  auto now = Clock::now();
  while (!idle_order_.empty() && idle_order_.front()->deadline <= now) {
    Session& session = *idle_order_.front();
    log_.debug("dropping idle connection of pid {} (request_timeout_ms)", session.peer.pid);
    close_session(session, Ending::unread);
  }
}

int Server::milliseconds_to_next_deadline() const {
  std::optional<Clock::time_point> next;
  if (!idle_order_.empty()) next = idle_order_.front()->deadline;
  if (watchdog_interval_.count() > 0 && (!next || next_watchdog_ < *next)) next = next_watchdog_;
  if (auto due = audit_.flush_deadline(); due && (!next || *due < *next)) next = *due;
  if (auto retry = state_.table.next_retry(); retry && (!next || *retry < *next)) next = *retry;
  if (fd_store_ != nullptr) {
    if (auto due = fd_store_->deadline(); due && (!next || *due < *next)) next = *due;
  }
  if (auto check = next_shared_socket_check(state_); check && (!next || *check < *next)) next = *check;
  // The disposer's queue was full: try again soon.
  if (disposer_.backlogged()) {
    auto retry = Clock::now() + std::chrono::milliseconds(10);
    if (!next || retry < *next) next = retry;
  }
  return epoll_timeout_ms<Clock>(Clock::now(), next);
}

}  // namespace sockbroker::broker
