#include "harness.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include <sockbroker/client.hpp>

#include "older_kernel.hpp"

namespace fs = std::filesystem;

namespace sbtest {
namespace {

void die(const char* what) {
  std::perror(what);
  std::abort();
}

// Keeps the children we start from inheriting the test's descriptors, so a
// broker's fd count is its own.
// SOCKBROKER_TEST_CHILD_TIMEOUT (seconds) for long runs such as the soak.
unsigned child_alarm_seconds() {
  const char* value = std::getenv("SOCKBROKER_TEST_CHILD_TIMEOUT");
  return value != nullptr ? static_cast<unsigned>(std::atoi(value)) : 60u;
}

void close_inherited_fds() { ::syscall(SYS_close_range, 3U, ~0U, 0U); }

// SOCKBROKER_TEST_KERNEL_WITHOUT_PEER_PIDFD=1 starts every broker as on a
// kernel older than 6.5 (Debian 12's 6.1), where getsockopt(SO_PEERPIDFD)
// fails with ENOPROTOOPT: a seccomp filter (older_kernel.hpp), installed in
// the broker's process just before its exec, answers that one call so and lets
// everything else through (root keeps its privileges across the exec). Clients and the test itself keep the real kernel. ctest runs the
// tests of callers' identity and of leases so too (tests/CMakeLists.txt).
void emulate_kernel_without_peer_pidfd_if_asked() {
  const char* asked = std::getenv("SOCKBROKER_TEST_KERNEL_WITHOUT_PEER_PIDFD");
  if (asked == nullptr || std::string_view(asked) != "1") return;
  std::string error;
  if (!hide_kernel_features(kWithoutPeerPidfd, true, &error)) {
    std::fprintf(stderr, "harness: %s\n", error.c_str());
    _exit(126);
  }
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

void drop_privileges(uid_t uid, gid_t gid) {
  if (::setgroups(0, nullptr) != 0) die("setgroups");
  if (::setgid(gid) != 0) die("setgid");
  if (::setuid(uid) != 0) die("setuid");
}

// Child side of ChildSetup: a step that fails is reported and ends the child.
void become(const ChildSetup& setup, int report_fd) {
  auto fail = [&](const std::string& what) {
    int err = errno;
    report(report_fd, "setup: " + what + ": " + std::strerror(err));
    _exit(100);
  };
  if (!setup.cgroup_procs.empty()) {
    int procs = ::open(setup.cgroup_procs.c_str(), O_WRONLY | O_CLOEXEC);
    if (procs < 0) fail("open " + setup.cgroup_procs);
    std::string self = std::to_string(::getpid());
    if (::write(procs, self.data(), self.size()) != static_cast<ssize_t>(self.size())) fail("write " + setup.cgroup_procs);
    ::close(procs);
  }
  if (::setgroups(setup.groups.size(), setup.groups.data()) != 0) fail("setgroups");
  if (::setgid(setup.gid) != 0) fail("setgid");
  if (::setuid(setup.uid) != 0) fail("setuid");
}

bool can_connect(const std::string& path) { return static_cast<bool>(connect_control(path)); }

std::string exchange_on(int fd, const std::string& send, int timeout_ms, bool stream) {
  if (::send(fd, send.data(), send.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(send.size())) return "<send failed>";
  if (stream) ::shutdown(fd, SHUT_WR);
  std::string out;
  char buffer[4096];
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()).count();
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) break;
    ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    out.append(buffer, static_cast<std::size_t>(n));
    if (!stream) break;  // one datagram is the whole answer
  }
  return out;
}

}  // namespace

void enter_private_netns() {
  static bool entered = false;
  if (entered) return;
  if (::unshare(CLONE_NEWNET) != 0) die("unshare(CLONE_NEWNET)");
  if (std::string error = bring_loopback_up(); !error.empty()) {
    std::cerr << error << "\n";
    std::abort();
  }
  entered = true;
}

std::string bring_loopback_up() {
  sockbroker::UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return std::string("socket: ") + std::strerror(errno);
  ifreq request{};
  std::strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(fd.get(), SIOCGIFFLAGS, &request) != 0) return std::string("SIOCGIFFLAGS lo: ") + std::strerror(errno);
  request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP);
  if (::ioctl(fd.get(), SIOCSIFFLAGS, &request) != 0) return std::string("SIOCSIFFLAGS lo: ") + std::strerror(errno);
  return "";
}

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout, std::chrono::milliseconds interval) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return done();
    std::this_thread::sleep_for(interval);
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string read_all(int fd) {
  std::string out;
  char buffer[4096];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buffer, static_cast<std::size_t>(n));
  }
  return out;
}

std::uint64_t inode_of(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 ? static_cast<std::uint64_t>(st.st_ino) : 0;
}

sockaddr_in ipv4_address(std::uint16_t port, std::uint32_t host_address) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(host_address);
  return address;
}

sockaddr_un unix_address(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  return address;
}

AbstractAddress abstract_address(const std::string& name) {
  AbstractAddress out;
  out.address.sun_family = AF_UNIX;
  const std::size_t size = std::min(name.size(), sizeof out.address.sun_path - 1);
  std::memcpy(out.address.sun_path + 1, name.data(), size);
  out.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + size);
  return out;
}

sockbroker::UniqueFd connect_control(const std::string& control) {
  sockbroker::UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd) return fd;
  sockaddr_un address = unix_address(control);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    int err = errno;
    fd.reset();
    errno = err;
  }
  return fd;
}

int bind_tcp(std::uint32_t host_address, std::uint16_t port, Reuse reuse, sockbroker::UniqueFd* bound) {
  sockbroker::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return errno;
  const int one = 1;
  if (reuse.addr && ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) return errno;
  if (reuse.port && ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) return errno;
  sockaddr_in address = ipv4_address(port, host_address);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) return errno;
  if (bound != nullptr) *bound = std::move(fd);
  return 0;
}

TempDir::TempDir() {
  std::string pattern = (fs::temp_directory_path() / "sockbroker-test-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) die("mkdtemp");
  path_ = pattern;
  ::chmod(path_.c_str(), 0755);
}

TempDir::~TempDir() {
  // SOCKBROKER_TEST_KEEP_TEMP=1 keeps policies, audit and broker logs for a post-mortem.
  if (std::getenv("SOCKBROKER_TEST_KEEP_TEMP") != nullptr) return;
  std::error_code ignored;
  fs::remove_all(path_, ignored);
}

void TempDir::write(const std::string& name, const std::string& content) const {
  std::ofstream out(file(name));
  out << content;
}

const Programs& programs() {
  // Copied once per test process into a directory of its own that outlives
  // the test's TempDir (children may still be running when it goes).
  static std::optional<Programs> copied;
  static std::optional<TempDir> bin;
  if (copied) return *copied;
  bin.emplace();
  auto copy = [&](const std::string& from, const std::string& name) {
    std::string to = bin->file(name);
    fs::copy_file(from, to, fs::copy_options::overwrite_existing);
    ::chmod(to.c_str(), 0755);
    return to;
  };
  Programs p;
  p.sockbroker = copy(SOCKBROKER_CLI_PATH, "sockbroker");
  p.demo_httpd = copy(SOCKBROKER_DEMO_HTTPD_PATH, "sockbroker-demo-httpd");
  p.self = copy(fs::read_symlink("/proc/self/exe").string(), "integration_tests");
  copied = p;
  return *copied;
}

std::optional<Broker> Broker::start(const TempDir& dir, const std::string& policy_toml,
                                    const std::vector<std::string>& extra_args,
                                    const std::vector<std::pair<std::string, int>>& handed,
                                    const std::string& binary, int output) {
  dir.write("policy.toml", policy_toml);
  std::string control = dir.file("control.sock");
  std::string audit = dir.file("audit.log");
  std::string log = dir.file("broker.log");
  std::vector<std::string> args{binary, "--policy", dir.file("policy.toml"), "--control", control};
  // A test that chooses the audit destination (the journal) gets no audit.log.
  if (std::find(extra_args.begin(), extra_args.end(), "--audit") == extra_args.end()) {
    args.insert(args.end(), {"--audit", audit});
  }
  args.insert(args.end(), extra_args.begin(), extra_args.end());

  pid_t pid = ::fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    int out = output >= 0 ? output : ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ::dup2(out, 1);
    ::dup2(out, 2);
    if (!handed.empty()) {
      // Out of the way first (a source may sit where a target goes), then in place.
      std::vector<int> moved;
      for (const auto& item : handed) moved.push_back(::fcntl(item.second, F_DUPFD_CLOEXEC, 1000));
      std::string names;
      for (std::size_t i = 0; i < moved.size(); ++i) {
        ::dup2(moved[i], 3 + static_cast<int>(i));  // dup2 clears close-on-exec
        names += (i ? ":" : "") + handed[i].first;
      }
      ::syscall(SYS_close_range, 3U + static_cast<unsigned>(handed.size()), ~0U, 0U);
      ::setenv("LISTEN_FDS", std::to_string(handed.size()).c_str(), 1);
      ::setenv("LISTEN_FDNAMES", names.c_str(), 1);
      ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
    } else {
      close_inherited_fds();
    }
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    emulate_kernel_without_peer_pidfd_if_asked();
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    _exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    // Connectable is not yet serving: the loop makes its epoll, signalfd and
    // spare descriptor after the control socket exists. One answered request
    // proves it runs, so fd baselines taken now are stable.
    // One connection at a time: a policy may allow root only one.
    if (can_connect(control)) {
      auto client = sockbroker::Client::connect(control);
      if (client && client->list()) return Broker(pid, control, audit, log);
    }
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      std::cerr << "sockbrokerd exited with " << decode_status(status) << " before serving:\n" << read_file(log);
      return std::nullopt;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  std::cerr << "sockbrokerd did not start serving within 5 s:\n" << read_file(log);
  return std::nullopt;
}

Broker::Broker(Broker&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      control_(std::move(other.control_)),
      audit_(std::move(other.audit_)),
      log_(std::move(other.log_)) {}

Broker::~Broker() {
  if (pid_ > 0) stop();
}

std::string Broker::log() const { return read_file(log_); }

bool Broker::wait_for_log(const std::string& needle, std::chrono::milliseconds timeout) const {
  return wait_until([&] { return log().find(needle) != std::string::npos; }, timeout);
}

int Broker::fd_count() const {
  int n = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator("/proc/" + std::to_string(pid_) + "/fd", ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    ++n;
  }
  return n;
}

int Broker::settled_fd_count() const {
  int previous = fd_count();
  for (int i = 0; i < 100; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    int now = fd_count();
    if (now == previous) return now;
    previous = now;
  }
  return previous;
}

std::string Broker::fd_listing() const {
  std::string out;
  std::error_code ec;
  for (auto it = fs::directory_iterator("/proc/" + std::to_string(pid_) + "/fd", ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    std::error_code link_error;
    out += it->path().filename().string() + " -> " + fs::read_symlink(it->path(), link_error).string() + "\n";
  }
  return out;
}

int Broker::wait_for_fd_count(int expected) const {
  int n = -1;
  wait_until([&] { return (n = fd_count()) == expected; });
  return n;
}

std::vector<nlohmann::json> Broker::audit_events() const {
  std::vector<nlohmann::json> events;
  std::string text = read_file(audit_);
  // A line without its newline is still being written (a reader can see a
  // write(2) that spans two pages half done): it is read next time.
  text.erase(text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1);
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) continue;
    events.push_back(nlohmann::json::parse(line));
  }
  return events;
}

std::vector<nlohmann::json> Broker::wait_for_events(const std::string& event, std::size_t at_least) const {
  std::vector<nlohmann::json> matching;
  wait_until(
      [&] {
        matching.clear();
        for (auto& e : audit_events()) {
          if (e.value("event", "") == event) matching.push_back(std::move(e));
        }
        return matching.size() >= at_least;
      },
      std::chrono::seconds(2));
  return matching;
}

int Broker::stop() {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  return decode_status(status);
}

int Broker::wait_exit(std::chrono::milliseconds timeout) {
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (pid_ > 0 && std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return decode_status(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return -1;
}

void Broker::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

int run_broker_to_exit(const TempDir& dir, const std::vector<std::string>& args, std::string* output) {
  std::vector<std::string> argv{SOCKBROKERD_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  ChildResult result = run_command_as(0, 0, argv);
  (void)dir;
  if (output != nullptr) *output = result.output;
  return result.exit_code >= 0 ? result.exit_code : 128 + result.signal;
}

void report(int report_fd, const std::string& line) {
  std::string text = line + "\n";
  (void)!::write(report_fd, text.data(), text.size());
}

Child::Child(const ChildSetup& setup, const std::function<int(int)>& fn) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) die("pipe2");
  pid_ = ::fork();
  if (pid_ < 0) die("fork");
  if (pid_ == 0) {
    ::close(pipe_fds[0]);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::alarm(child_alarm_seconds());  // a hung child fails its test instead of the whole run
    become(setup, pipe_fds[1]);
    _exit(fn(pipe_fds[1]));
  }
  ::close(pipe_fds[1]);
  report_.reset(pipe_fds[0]);
}

Child::~Child() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

bool Child::exited() const {
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0) return true;  // gone already
  return info.si_pid == pid_;
}

ChildResult Child::wait() {
  ChildResult result;
  result.output = read_all(report_.get());
  report_.reset();
  int status = 0;
  if (::waitpid(pid_, &status, 0) != pid_) die("waitpid");
  pid_ = -1;
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  return result;
}

ChildResult run_as(const ChildSetup& setup, const std::function<int(int)>& fn) { return Child(setup, fn).wait(); }

Pipe::Pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) die("pipe2");
  read.reset(fds[0]);
  write.reset(fds[1]);
}

void notify(const Pipe& pipe) {
  if (::write(pipe.write.get(), "x", 1) != 1) die("notify: write");
}

bool await(const Pipe& pipe, int timeout_ms) {
  pollfd p{pipe.read.get(), POLLIN, 0};
  char byte;
  return ::poll(&p, 1, timeout_ms) == 1 && ::read(pipe.read.get(), &byte, 1) == 1;
}

ChildResult cli_as(uid_t uid, gid_t gid, const Broker& broker, const std::vector<std::string>& args) {
  std::vector<std::string> argv{programs().sockbroker, "--control", broker.control()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command_as(uid, gid, argv);
}

namespace {

// The child side of acquire_as: acquire, probe, report one JSON line.
int acquire_and_report(const std::string& control, const std::string& name, int report_fd, const GrantProbe& probe) {
  auto grant = sockbroker::acquire(name, control);
  if (!grant) {
    report(report_fd, nlohmann::json{{"code", grant.error().code}, {"message", grant.error().message}}.dump());
    return 0;
  }
  nlohmann::json out{{"granted", true}, {"family", grant->family}, {"address", grant->address}};
  if (probe) out["probe"] = probe(grant->fd.get());
  report(report_fd, out.dump());
  return 0;
}

Acquired parse_acquired(const ChildResult& child) {
  Acquired out;
  if (child.exit_code != 0) {
    out.message = "child exited " + std::to_string(child.exit_code) + " (signal " + std::to_string(child.signal) +
                  "): " + child.output;
    return out;
  }
  nlohmann::json reported = nlohmann::json::parse(child.output, nullptr, false);
  if (reported.is_discarded()) {
    out.message = "unparseable report: " + child.output;
    return out;
  }
  out.granted = reported.value("granted", false);
  out.code = reported.value("code", 0);
  out.message = reported.value("message", child.output);
  out.family = reported.value("family", 0);
  out.address = reported.value("address", "");
  if (reported.contains("probe")) out.probe = reported["probe"];
  return out;
}

}  // namespace

Acquired acquire_as(const ChildSetup& setup, const Broker& broker, const std::string& name, const GrantProbe& probe) {
  return parse_acquired(
      run_as(setup, [&](int report_fd) { return acquire_and_report(broker.control(), name, report_fd, probe); }));
}

::testing::AssertionResult grants(const Broker& broker, const std::string& name, uid_t uid, gid_t gid) {
  Acquired acquired = acquire_as(ChildSetup{uid, gid, {}, {}}, broker, name);
  if (acquired.granted) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "acquire of \"" << name << "\" as uid " << uid << " failed: " << acquired.message;
}

std::string answer_pong(int listener, sockaddr_storage* peer) {
  sockaddr_storage from{};
  socklen_t from_length = sizeof from;
  sockbroker::UniqueFd client(::accept4(listener, reinterpret_cast<sockaddr*>(&from), &from_length, SOCK_CLOEXEC));
  if (!client) return std::string("accept: ") + std::strerror(errno);
  if (peer != nullptr) *peer = from;
  char buffer[256];
  ssize_t n = ::read(client.get(), buffer, sizeof buffer);
  if (n < 0) return std::string("read: ") + std::strerror(errno);
  if (n == 0) return "read: end of stream before the ping";
  std::string answer = "pong:" + std::string(buffer, static_cast<std::size_t>(n));
  if (::write(client.get(), answer.data(), answer.size()) != static_cast<ssize_t>(answer.size())) {
    return std::string("write: ") + std::strerror(errno);
  }
  return "";
}

ChildResult run_command_as(uid_t uid, gid_t gid, const std::vector<std::string>& argv_in,
                           const std::vector<std::string>& extra_env) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) die("pipe2");
  pid_t pid = ::fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    ::dup2(pipe_fds[1], 1);
    ::dup2(pipe_fds[1], 2);
    close_inherited_fds();
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::alarm(60);
    if (uid != 0 || gid != 0) drop_privileges(uid, gid);
    for (const auto& assignment : extra_env) ::putenv(const_cast<char*>(assignment.c_str()));
    std::vector<char*> argv;
    for (const auto& a : argv_in) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    std::perror("execv");
    _exit(127);
  }
  ::close(pipe_fds[1]);
  ChildResult result;
  result.output = read_all(pipe_fds[0]);
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  return result;
}

Background::Background(uid_t uid, gid_t gid, const std::vector<std::string>& argv_in) {
  output_path_ = dir_.file("output");
  pid_ = ::fork();
  if (pid_ < 0) die("fork");
  if (pid_ == 0) {
    int out = ::open(output_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(out, 1);
    ::dup2(out, 2);
    close_inherited_fds();
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    // Its own process group, so that the destructor reaches what it starts
    // too (the program under `sockbroker run`).
    ::setpgid(0, 0);
    drop_privileges(uid, gid);
    std::vector<char*> argv;
    for (const auto& a : argv_in) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    std::perror("execv");
    _exit(127);
  }
  ::setpgid(pid_, pid_);  // also here: whichever runs first, the group exists before the destructor
}

namespace {

// Whether a process of group `pgid` still runs (zombies hold no descriptor).
bool group_has_live_process(pid_t pgid) {
  std::error_code ec;
  for (auto it = fs::directory_iterator("/proc", ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    // /proc/PID/stat: "pid (comm) state ppid pgrp ..."; comm may hold spaces.
    const std::string stat = read_file(it->path() / "stat");
    const auto close_paren = stat.rfind(')');
    if (close_paren == std::string::npos) continue;
    std::istringstream fields(stat.substr(close_paren + 1));
    char state = 0;
    pid_t parent = 0, group = 0;
    fields >> state >> parent >> group;
    if (group == pgid && state != 'Z' && state != 'X') return true;
  }
  return false;
}

}  // namespace

Background::~Background() {
  if (pid_ > 0) {
    // The whole group, and until it is gone: a program under `sockbroker run`
    // outlives its supervisor's SIGKILL for a moment (PR_SET_PDEATHSIG is
    // asynchronous), holding its sockets, and the next test's bind of the
    // same port would race it.
    ::kill(-pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    (void)wait_until([&] { return !group_has_live_process(pid_); }, std::chrono::seconds(5));
  }
}

int Background::wait() {
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  killed_by_ = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  return decode_status(status);
}

std::string Background::output() const { return read_file(output_path_); }

bool Background::wait_for_output(const std::string& needle, std::chrono::milliseconds timeout) const {
  return wait_until([&] { return output().find(needle) != std::string::npos; }, timeout);
}

namespace {

// One exchange with 127.0.0.1:port over a socket of `type` (stream or datagram).
std::string loopback_exchange(int type, std::uint16_t port, const std::string& send, int timeout_ms) {
  sockbroker::UniqueFd fd(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
  if (!fd) return "<socket failed>";
  sockaddr_in address = ipv4_address(port);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) return "<connect failed>";
  return exchange_on(fd.get(), send, timeout_ms, type == SOCK_STREAM);
}

}  // namespace

std::string tcp_exchange(std::uint16_t port, const std::string& send, int timeout_ms) {
  return loopback_exchange(SOCK_STREAM, port, send, timeout_ms);
}

std::string udp_exchange(std::uint16_t port, const std::string& send, int timeout_ms) {
  return loopback_exchange(SOCK_DGRAM, port, send, timeout_ms);
}

std::string unix_exchange(const std::string& path, const std::string& send, int timeout_ms) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address = unix_address(path);
  std::string out = "<connect failed>";
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
    out = exchange_on(fd, send, timeout_ms, true);
  }
  ::close(fd);
  return out;
}

std::unique_ptr<Background> start_worker(const Broker& broker, const std::string& socket, const std::string& tag,
                                         const std::string& on_revoke) {
  return std::make_unique<Background>(
      kNobody, kNogroup,
      std::vector<std::string>{programs().sockbroker, "--control", broker.control(), "run", "-s", socket,
                               "--on-revoke", on_revoke, "--", programs().self, "--echo-server", tag});
}

std::uint64_t inode_of_granted(const Broker& broker, const std::string& name) {
  auto got = acquire_as_nobody(broker, name, [](int fd) -> nlohmann::json { return inode_of(fd); });
  return got.granted ? got.probe.get<std::uint64_t>() : 0;
}

}  // namespace sbtest

namespace {

// `integration_tests --probe-listen-fds`: what a socket-activated program sees
// after `sockbroker run` exec'd it, as JSON on stdout.
int probe_listen_fds() {
  std::map<std::string, std::string> raw_environment;
  for (const char* name : {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"}) {
    if (const char* value = std::getenv(name); value != nullptr) raw_environment[name] = value;
  }
  // sd_listen_fds() itself sets FD_CLOEXEC on what it finds: look first.
  std::vector<bool> inherited_cloexec;
  if (const char* count = std::getenv("LISTEN_FDS"); count != nullptr) {
    for (int i = 0; i < std::atoi(count); ++i) {
      inherited_cloexec.push_back((::fcntl(SD_LISTEN_FDS_START + i, F_GETFD) & FD_CLOEXEC) != 0);
    }
  }
  char** names = nullptr;
  int n = ::sd_listen_fds_with_names(0, &names);
  nlohmann::json out{{"n", n}, {"names", nlohmann::json::array()}, {"fds", nlohmann::json::array()}};
  for (int i = 0; i < n; ++i) {
    out["names"].push_back(names != nullptr ? names[i] : "");
    int fd = SD_LISTEN_FDS_START + i;
    out["fds"].push_back({{"fd", fd},
                          {"listening_stream", ::sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) > 0},
                          {"datagram", ::sd_is_socket(fd, AF_UNSPEC, SOCK_DGRAM, -1) > 0},
                          {"cloexec", i < static_cast<int>(inherited_cloexec.size()) && inherited_cloexec[static_cast<std::size_t>(i)]}});
  }
  long seccomp_mode = -1;
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("Seccomp:", 0) == 0) seccomp_mode = std::stol(line.substr(8));
  }
  out["seccomp"] = seccomp_mode;
  // The variables exactly as exec passed them, and whose they should be.
  out["pid"] = ::getpid();
  out["environment"] = nlohmann::json::object();
  for (const auto& [name, value] : raw_environment) out["environment"][name] = value;
  std::cout << out.dump() << std::endl;
  return 0;
}

// `integration_tests --echo-server TAG`: a socket-activated worker that
// answers every connection on its LISTEN_FDS sockets with "TAG\n". Exits 3
// (printing why) when accept fails, e.g. after the broker revoked the socket.
int echo_server(const std::string& tag) {
  int n = ::sd_listen_fds(0);
  if (n <= 0) {
    std::cerr << "echo-server: no LISTEN_FDS\n";
    return 2;
  }
  std::vector<pollfd> fds;
  for (int i = 0; i < n; ++i) fds.push_back(pollfd{SD_LISTEN_FDS_START + i, POLLIN, 0});
  std::cout << "ready" << std::endl;
  for (;;) {
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return 4;
    }
    for (auto& p : fds) {
      if (p.revents == 0) continue;
      int client = ::accept4(p.fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) {
        std::cout << "accept: " << std::strerror(errno) << std::endl;
        return 3;
      }
      std::string line = tag + "\n";
      (void)!::write(client, line.data(), line.size());
      ::close(client);
    }
  }
}

}  // namespace

int supervised_probe(int argc, char** argv);  // supervised_probe.cpp
int threaded_bind_probe(int argc, char** argv);  // supervised_probe.cpp

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--probe-listen-fds") == 0) return probe_listen_fds();
  if (argc > 1 && std::strcmp(argv[1], "--supervised-probe") == 0) return supervised_probe(argc, argv);
  if (argc > 1 && std::strcmp(argv[1], "--threaded-bind-probe") == 0) return threaded_bind_probe(argc, argv);
  if (argc > 2 && std::strcmp(argv[1], "--echo-server") == 0) return echo_server(argv[2]);
  if (argc > 1 && std::strcmp(argv[1], "--as-older-kernel") == 0) return sbtest::as_older_kernel(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
