// sockbrokerd: the root daemon that owns privileged and SO_REUSEPORT binds and
// hands bound sockets to the services the policy names.
//
// main() builds everything (logger, policy, audit, socket table, control
// socket, loop) and hands it down: no globals.
#include <malloc.h>

#include <algorithm>
#include <sys/resource.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <map>
#include <optional>


#include "audit.hpp"
#include "audit_spill.hpp"
#include "control_path.hpp"
#include "confinement.hpp"
#include "control_socket.hpp"
#include "descriptor_disposer.hpp"
#include "fd_store.hpp"
#include "handover.hpp"
#include "keeper.hpp"
#include "upgrade.hpp"
#include "loader.hpp"
#include "kernel_probe.hpp"
#include "peer_identity.hpp"
#include "server.hpp"

namespace {

// sysexits(3), as CONTRACT.md lists them for sockbrokerd.
constexpr int kExitUsage = 64;
constexpr int kExitOsErr = 71;
constexpr int kExitCantCreate = 73;
constexpr int kExitConfig = 78;

using namespace sockbroker;

std::shared_ptr<spdlog::logger> make_logger(const std::string& level) {
  auto log = std::make_shared<spdlog::logger>("sockbrokerd", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  // Under systemd the journal adds time and name; on a terminal they help.
  log->set_pattern(std::getenv("JOURNAL_STREAM") != nullptr ? "%l: %v" : "%Y-%m-%d %H:%M:%S.%e sockbrokerd %l: %v");
  log->set_level(spdlog::level::from_str(level));
  log->flush_on(spdlog::level::trace);
  return log;
}

// Under systemd, stdout and stderr are a stream socket to journald, this
// service's own. A stalled journald lets it fill, and a blocking write of a log
// or audit line would then stop the broker's one thread: every grant, every
// connection and the watchdog's ping (systemd would kill a healthy broker for
// a sick journald). On a socket, a write that would wait fails instead: a log
// line is dropped, an audit line waits in memory (audit.hpp, a failing trail).
// Never half a line: an AF_UNIX stream send shorter than half the send buffer
// (journald's: ~100 KiB of 208 KiB) is queued whole or not at all.
// Terminals, pipes and files are left as they are: their open file
// description is often shared with others (a shell) that expect it blocking.
void never_wait_on_stream_sockets(spdlog::logger& log) {
  for (const int fd : {STDOUT_FILENO, STDERR_FILENO}) {
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ((flags & O_NONBLOCK) == 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)) {
      log.warn("cannot make {} non-blocking: {}; a stalled reader (journald) would stall the broker",
               fd == STDOUT_FILENO ? "stdout" : "stderr", std::strerror(errno));
    }
  }
}

// Each session costs two descriptors (the connection and the caller's pidfd),
// each holder process one (its pidfd), each socket one; reuse_port members the
// broker keeps for live workers, and the spare member it binds ahead for each
// group, come on top, so take all the soft limit may have. Out of descriptors
// the broker drops new connections but keeps serving.
void ensure_descriptor_budget(const policy::Policy& policy, spdlog::logger& log) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  // Plus room for what one request can carry (SCM_MAX_FD, twice over), and for
  // the descriptors that wait for the disposer (server.cpp, kDisposerHighWater):
  // a datagram whose descriptors did not fit would have the kernel release the
  // rest on the event loop.
  rlim_t needed = 3 * static_cast<rlim_t>(policy.broker.max_clients) + policy.sockets.size() + 64 + 2 * 253 + 4096;
  for (const auto& spec : policy.sockets) {
    if (spec.reuse_port) needed += (spec.max_grants != 0 ? spec.max_grants : 64) + 1;
  }
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) (void)::getrlimit(RLIMIT_NOFILE, &limit);
  }
  if (limit.rlim_cur < needed) {
    log.warn("RLIMIT_NOFILE is {} but max_clients = {} and {} sockets need about {}; "
             "connections beyond it will be dropped (raise LimitNOFILE)",
             limit.rlim_cur, policy.broker.max_clients, policy.sockets.size(), needed);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "sockbrokerd: the socket broker daemon.\n\n"
      "Binds every socket the policy names (privileged ports, SO_REUSEPORT groups, Unix paths) and\n"
      "hands them, over the control socket, to the services the policy allows. Runs as root.\n"
      "SIGTERM/SIGINT stop it, SIGHUP reloads the policy, SIGUSR2 upgrades it in place (re-executes its\n"
      "binary from disk, keeping its pid, sockets and leases); audit events are JSON lines.",
      "sockbrokerd"};
  std::vector<std::string> policy_paths;
  std::string control = kDefaultControlSocket;
  std::string audit_destination;
  std::string log_level = "info";
  unsigned audit_flush_ms = 10;
  bool no_confine = false;
  bool no_fd_store = false;
  int upgrade_from = -1;
  bool control_created = false;  // an upgrade in place: the previous image made the control socket's path
  // Saved before anything changes: what an upgrade in place executes again.
  const std::string own_binary = broker::own_binary_path();
  const std::vector<std::string> own_arguments = broker::upgrade_arguments(argc, argv);
  app.add_option("--policy", policy_paths,
                 "policy file, or directory of *.toml read in lexical order (repeatable; default "
                 "/etc/sockbroker/policy.toml then /etc/sockbroker/policy.d/)");
  app.add_option("--control", control, "control socket path (ignored when systemd passes the socket)")
      ->capture_default_str();
  app.add_option("--audit", audit_destination, "audit events: a file path, \"journal\", or \"-\" for stdout (default: stderr)");
  app.add_option("--audit-flush-ms", audit_flush_ms,
                 "an audit file gets its lines in batches, at most this long after the first unwritten one "
                 "(one write per burst of grants, not one per grant; a crash or SIGKILL loses at most that "
                 "long's lines). 0 writes every line before the reply it records is sent")
      ->capture_default_str()
      ->check(CLI::Range(0u, 1000u));
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or critical")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  app.add_flag("--no-confine", no_confine,
               "for debugging only: keep every capability and skip NO_NEW_PRIVS and the seccomp filter "
               "(by default the broker confines itself once its sockets are bound)");
  app.add_flag("--no-fd-store", no_fd_store,
               "under systemd, keep no socket in its file descriptor store (by default every bound socket, the "
               "control socket and the broker's state go there, so that a restart or a crash loses no port)");
  app.add_option("--upgrade-from", upgrade_from,
                 "internal: the manifest descriptor a running sockbrokerd passes to the image it upgrades to")
      ->group("");
  app.add_flag("--control-created", control_created, "internal: with --upgrade-from")->group("");
  app.set_version_flag("--version", std::string("sockbrokerd ") + SOCKBROKER_VERSION);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : kExitUsage;
  }

  auto log = make_logger(log_level);

  auto loaded = policy::load_policy(policy_paths);
  for (const auto& diagnostic : loaded.diagnostics) {
    if (diagnostic.severity == policy::Diagnostic::Severity::error) {
      log->error("{}", diagnostic.format());
    } else {
      log->warn("{}", diagnostic.format());
    }
  }
  if (!loaded.policy) {
    log->critical("the policy is invalid; not starting (check it with: sockbroker check)");
    return kExitConfig;
  }

  // An upgrade in place: what the previous image handed on, by name.
  std::vector<broker::HandoverItem> carried;
  if (upgrade_from >= 0) {
    auto taken = broker::take_manifest(upgrade_from);
    if (!taken) {
      log->critical("cannot read the upgrade manifest: {}", taken.error().describe());
      return kExitOsErr;
    }
    carried = std::move(*taken);
  }
  auto take_carried = [&](std::string_view name) -> UniqueFd {
    for (auto& item : carried) {
      if (item.fd && item.name == name) return std::move(item.fd);
    }
    return UniqueFd();
  };

  UniqueFd carried_audit = take_carried("audit");
  auto audit = carried_audit ? Result<broker::Audit>(broker::Audit::adopt(std::move(carried_audit)))
                             : broker::Audit::open(audit_destination);
  if (!audit) {
    log->critical("{}", audit.error().message);
    return kExitCantCreate;
  }
  audit->set_flush_interval(std::chrono::milliseconds(audit_flush_ms));
  audit->set_logger(log.get());
  if (auto s = broker::Server::block_signals(); !s) {
    log->critical("{}", s.error().describe());
    return kExitOsErr;
  }
  ensure_descriptor_budget(*loaded.policy, *log);

  // First, while the broker holds nothing it would hand on, and before the
  // control socket accepts anyone: the process that releases what clients
  // send, so that the loop never waits on it (confinement forbids fork).
  UniqueFd carried_disposer = take_carried("disposer");
  auto disposer = carried_disposer ? Result<broker::Disposer>(broker::Disposer::adopt(std::move(carried_disposer)))
                                   : broker::Disposer::start();
  if (!disposer) {
    log->critical("cannot start the descriptor disposer: {}", disposer.error().describe());
    audit->emit("stop", {{"pid", ::getpid()}, {"reason", "disposer"}});
    return kExitOsErr;
  }

  // The process that keeps copies across an upgrade in place (keeper.hpp);
  // forked now, like the disposer, while the broker may still fork.
  std::optional<broker::Keeper> keeper;
  if (UniqueFd carried_keeper = take_carried("keeper")) {
    keeper = broker::Keeper::adopt(std::move(carried_keeper));
  } else if (auto started = broker::Keeper::start()) {
    keeper = std::move(*started);
  } else {
    log->warn("no keeper process ({}): an upgrade in place whose new image dies loses the ports, unless systemd's "
              "store has them",
              started.error().describe());
  }

  // What a previous broker left: systemd's descriptor store (after a
  // restart or a crash), or socket activation's control socket; else what
  // the keeper of an upgrade that failed holds.
  std::vector<broker::HandoverItem> passed = upgrade_from >= 0 ? std::move(carried) : broker::take_listen_fds();
  bool control_from_keeper = false;  // for the "ready" line only
  if (upgrade_from < 0) {
    // Taken in any case, so that no keeper lingers holding ports; systemd's
    // store, when it handed anything, is the more recent and wins.
    auto rescued = broker::take_from_keeper(*log);
    const bool from_store = std::any_of(passed.begin(), passed.end(), [](const broker::HandoverItem& item) {
      return item.name == "state" || broker::socket_item(item.name);
    });
    if (from_store && !rescued.empty()) {
      log->info("systemd's store handed the sockets over; the keeper's copies are closed");
    } else {
      // A control socket systemd passed (socket activation) wins over the
      // keeper's. Decided before the loop: `passed` grows in it.
      const bool systemd_passed_one = !passed.empty();
      for (auto& item : rescued) {
        if (item.name == "control" && systemd_passed_one) continue;
        if (item.name == "control") control_from_keeper = true;
        passed.push_back(std::move(item));
      }
    }
  }
  // The audit lines a previous broker could not write: handed on by the image
  // this one upgraded, kept in systemd's store across a restart or a crash
  // (fd_store.hpp), or by the keeper of an upgrade whose new image died.
  // Written first, before this broker's own lines.
  UniqueFd handed_audit;
  for (auto& item : passed) {
    if (item.fd && item.name == broker::FdStore::kAuditItem) {
      handed_audit = std::move(item.fd);
      break;
    }
  }
  if (handed_audit) {
    auto lines = broker::read_carried_text(handed_audit.get(), broker::Audit::kMaxRetained + 1);
    if (lines) {
      audit->carry_in(*lines);
      log->info("{} audit line(s) the previous broker could not write are written first", audit->lines_pending());
    } else {
      log->error("the audit lines the previous broker could not write are lost: {}", lines.error().describe());
    }
  }
  // The file that keeps them past a stop or a crash (audit_spill.hpp): handed
  // on by the image this one upgraded, else next to the control socket (if
  // its directory is there yet: else once the control socket has made it).
  // What it holds is written first, unless they came above: the same lines.
  std::optional<broker::AuditSpill> spill;
  for (auto& item : passed) {
    if (item.fd && item.name == broker::AuditSpill::kItem) {
      spill = broker::AuditSpill::adopt(std::move(item.fd), control + broker::AuditSpill::kSuffix);
      break;
    }
  }
  // (An upgraded image, confined, could not create it: only an image handed one has one.)
  if (!spill && upgrade_from < 0) spill = broker::AuditSpill::open(control, *log, false);
  if (spill && spill->holds_lines() && !handed_audit) {
    auto lines = spill->left_over(broker::Audit::kMaxRetained + 1);
    if (lines) {
      audit->carry_in(*lines);
      log->info("{} audit line(s) the previous broker could not write are written first (kept in {})",
                audit->lines_pending(), spill->path());
    } else {
      log->error("the audit lines a previous broker left in {} are lost: {}", spill->path(),
                 lines.error().describe());
    }
  }

  // What systemd's store still holds (it hands back copies), before adoption
  // takes the items: the store is then kept in step from there. Without
  // systemd there is no store, and 10,000 handed sockets need no fstat.
  std::optional<broker::FdStore> fd_store;
  if (!no_fd_store && broker::FdStore::notify_socket_set()) {
    std::map<std::string, std::uint64_t> handed_back;
    UniqueFd handed_state;
    for (const auto& item : passed) {
      if (!item.fd || !(item.name == "state" || item.name == "control" || broker::socket_item(item.name))) continue;
      handed_back[item.name] = broker::FdStore::inode_of(item.fd.get());
      if (item.name == "state") handed_state.reset(::fcntl(item.fd.get(), F_DUPFD_CLOEXEC, 3));
    }
    fd_store = broker::FdStore::open(*log, handed_back, std::move(handed_state), std::move(handed_audit));
  }

  broker::BrokerState state{std::move(*loaded.policy), policy_paths, {}, {}, 1, {}, {}};
  audit->emit("start", {{"pid", ::getpid()},
                        {"version", SOCKBROKER_VERSION},
                        {"policy_files", state.policy.files},
                        {"sockets", state.policy.sockets.size()},
                        {"upgraded", upgrade_from >= 0}});
  const bool handed_over = std::any_of(passed.begin(), passed.end(), [](const broker::HandoverItem& item) {
    return item.name == "state" || broker::socket_item(item.name);
  });
  if (handed_over) {
    const std::int64_t this_start = state.metrics.start_time;
    const broker::Adopted adopted = broker::adopt(passed, state, *audit, *log);
    if (upgrade_from >= 0) {
      ++state.metrics.upgrades;
      state.metrics.last_upgrade_time = broker::Metrics::unix_now();
    } else {
      state.metrics.start_time = this_start;  // a restart is a new start; an upgrade is not
    }
    log->info("adopted {} socket(s), {} holder(s) with {} lease(s) from the previous broker{}", adopted.sockets,
              adopted.holders, adopted.leases,
              adopted.refused != 0 ? "; refused " + std::to_string(adopted.refused) + " that the policy no longer has"
                                   : std::string());
  } else {
    state.table = broker::SocketTable::bind_all(state.policy, *audit, *log);
  }

  auto control_socket = broker::open_control_socket(control, state.policy.broker.control_mode, passed);
  if (!control_socket) {
    log->critical("cannot create the control socket: {}", control_socket.error().describe());
    audit->emit("stop", {{"pid", ::getpid()}, {"reason", "control socket"}});
    return kExitOsErr;
  }
  if (!spill && upgrade_from < 0) spill = broker::AuditSpill::open(control, *log, true);
  std::string created_path = control_socket->created_path;
  if (upgrade_from >= 0 && control_created) created_path = control;  // ours to remove at exit, as before
  if (fd_store) {
    // Kept across a restart, the control socket's queue holds the clients
    // that connect meanwhile: they wait instead of failing.
    fd_store->store_control(control_socket->fd.get(), *log);
    fd_store->sync(state, *log, true);
  }

  // (An upgraded image already runs under the filter, which refuses the
  // probe's socketpair; its predecessor said it.)
  if (upgrade_from < 0 && !kernel_probe::gives_peer_pidfd()) {
    log->info("this kernel has no SO_PEERPIDFD (Linux < 6.5): each caller's process is found at accept by the pid "
              "it connected with, and kept only if it runs as the uid and gid that connected (README, kernel "
              "features)");
  }

  // Everything that needs full root is done: from here the broker keeps only
  // what the policy needs (see confinement.hpp).
  if (upgrade_from >= 0 && broker::already_confined()) {
    // The previous image's filter and capabilities survived the exec.
    log->info("confined: as the image this one upgraded (its seccomp filter and capabilities are inherited)");
  } else if (no_confine) {
    log->warn("--no-confine: running with every capability and without the seccomp filter (debugging only)");
  } else if (auto confined = broker::confine(state.policy, *log); !confined) {
    log->critical("cannot confine the broker (drop capabilities, no_new_privs, seccomp): {}; not serving "
                  "(--no-confine skips this, for debugging only)",
                  confined.error().describe());
    if (!created_path.empty()) ::unlink(created_path.c_str());
    audit->emit("stop", {{"pid", ::getpid()}, {"reason", "confinement"}});
    return kExitOsErr;
  }

  // Start-up (parsing, binding, libseccomp) leaves freed heap the idle broker
  // would otherwise keep resident; give it back (brk and madvise, both allowed
  // by the filter).
  ::malloc_trim(0);

  std::string status = "serving " + std::to_string(state.table.bound_count()) + " sockets" +
                       (state.table.failed_count() ? ", " + std::to_string(state.table.failed_count()) + " failed" : "");
  audit->flush();  // start and bind, before anyone is told the broker is ready
  log->info("ready on {}: {}",
            !created_path.empty() ? created_path
                                  : (upgrade_from >= 0       ? "the control socket kept across the upgrade"
                                     : control_from_keeper ? "the control socket the keeper kept"
                                                           : "the socket systemd passed"),
            status);
  ::sd_notifyf(0, "READY=1\nSTATUS=%s\nMAINPID=%d", status.c_str(), static_cast<int>(::getpid()));
  // This image holds everything now: the keeper's copies can go.
  if (upgrade_from >= 0 && keeper) {
    if (auto s = keeper->release(); !s) log->warn("the keeper did not let go: {}", s.error().describe());
  }

  if (!control_socket->credentials_from_connect) {
    log->warn("the control socket systemd passed has no PassCredentials=yes: connections made before sockbrokerd "
              "started are bound to their connector only as SO_PEERCRED says (add PassCredentials=yes to the "
              "socket unit, as the shipped sockbroker.socket has)");
  }
  never_wait_on_stream_sockets(*log);
  broker::Server server(std::move(control_socket->fd), control_socket->credentials_from_connect, state, *audit,
                        *disposer, *log);
  if (fd_store) server.set_fd_store(&*fd_store);
  if (spill) server.set_audit_spill(&*spill);
  if (!own_binary.empty()) {
    server.set_upgrader([&](int control_fd) {
      std::vector<std::string> arguments = own_arguments;
      if (!created_path.empty()) arguments.emplace_back("--control-created");
      return broker::reexecute(own_binary, arguments, state,
                               broker::UpgradeCarry{control_fd, &*audit, disposer->socket(), fd_store ? &*fd_store : nullptr,
                                                    keeper ? &*keeper : nullptr, spill ? spill->fd() : -1},
                               *log);
    });
  }
  std::uint64_t watchdog_usec = 0;
  if (int enabled = ::sd_watchdog_enabled(0, &watchdog_usec); enabled > 0) {
    log->info("systemd watchdog: WATCHDOG=1 every {} ms", watchdog_usec / 2000);
    server.set_watchdog_interval(std::chrono::microseconds(watchdog_usec));
  } else if (enabled < 0) {
    log->warn("ignoring the watchdog settings: {}", std::strerror(-enabled));
  }
  auto served = server.run();

  if (fd_store) {
    fd_store->mark_stale();
    fd_store->sync(state, *log, true);  // the last word on leases, for the next broker
  }
  ::sd_notify(0, "STOPPING=1");
  // A control socket systemd keeps serves the next broker: its path stays.
  if (!created_path.empty() && !(fd_store && fd_store->holds("control"))) ::unlink(created_path.c_str());
  audit->emit_suppressed();
  audit->emit("stop", {{"pid", ::getpid()}, {"reason", served ? "signal" : served.error().describe()}});
  audit->flush_before_exit();
  if (fd_store) fd_store->keep_unwritten_audit(*audit, *log, true);
  if (spill) spill->keep(*audit, *log, true);
  if (audit->failing()) {
    const bool in_store = fd_store && fd_store->unwritten_audit_memfd() >= 0;
    const bool in_file = spill && spill->holds_lines();
    const bool logged = !audit->shares_the_log();
    std::string kept = in_file ? spill->path() + " keeps them for the next broker" : std::string();
    if (in_store) kept += std::string(in_file ? "; " : "") + "systemd's store keeps them for a restart";
    if (kept.empty()) kept = "nothing keeps them for a next broker";
    log->error("exiting with {} audit line(s) the trail would not take: {}; {}{}", audit->lines_pending(),
               audit->failure()->describe(), kept,
               logged ? in_file || in_store ? "; they follow in the log too"
                                            : "; they follow in the log, the last place left to keep them"
                      : "");
    // The log is a channel of its own (under systemd, journald's stream):
    // where the trail is a full disk or a dead pipe, it may still take them.
    if (logged) {
      const std::string lines = audit->unwritten();
      for (std::size_t at = 0; at < lines.size();) {
        std::size_t end = lines.find('\n', at);
        if (end == std::string::npos) end = lines.size();
        if (end > at) log->error("unwritten audit line: {}", std::string_view(lines).substr(at, end - at));
        at = end + 1;
      }
    }
  }
  if (!served) {
    log->critical("{}", served.error().describe());
    return kExitOsErr;
  }
  return 0;
}
