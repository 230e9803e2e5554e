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
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <sockbroker/client.hpp>

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

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
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

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void drop_privileges(uid_t uid, gid_t gid) {
  if (::setgroups(0, nullptr) != 0) die("setgroups");
  if (::setgid(gid) != 0) die("setgid");
  if (::setuid(uid) != 0) die("setuid");
}

bool can_connect(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  ::close(fd);
  return ok;
}

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
  // A new network namespace starts with lo down.
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ifreq request{};
  std::strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(fd, SIOCGIFFLAGS, &request) != 0) die("SIOCGIFFLAGS lo");
  request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP);
  if (::ioctl(fd, SIOCSIFFLAGS, &request) != 0) die("SIOCSIFFLAGS lo");
  ::close(fd);
  entered = true;
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
                                    const std::vector<std::string>& extra_args) {
  dir.write("policy.toml", policy_toml);
  std::string control = dir.file("control.sock");
  std::string audit = dir.file("audit.log");
  std::string log = dir.file("broker.log");
  std::vector<std::string> args{SOCKBROKERD_PATH, "--policy", dir.file("policy.toml"), "--control", control};
  // A test that chooses the audit destination (the journal) gets no audit.log.
  if (std::find(extra_args.begin(), extra_args.end(), "--audit") == extra_args.end()) {
    args.insert(args.end(), {"--audit", audit});
  }
  args.insert(args.end(), extra_args.begin(), extra_args.end());

  pid_t pid = ::fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ::dup2(out, 1);
    ::dup2(out, 2);
    close_inherited_fds();
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
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
    if (can_connect(control) && sockbroker::Client::connect(control) && sockbroker::Client::connect(control)->list()) {
      return Broker(pid, control, audit, log);
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
  int n = fd_count();
  for (int i = 0; i < 500 && n != expected; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    n = fd_count();
  }
  return n;
}

std::vector<nlohmann::json> Broker::audit_events() const {
  std::vector<nlohmann::json> events;
  std::istringstream lines(read_file(audit_));
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) continue;
    events.push_back(nlohmann::json::parse(line));
  }
  return events;
}

std::vector<nlohmann::json> Broker::wait_for_events(const std::string& event, std::size_t at_least) const {
  std::vector<nlohmann::json> matching;
  for (int i = 0; i < 200; ++i) {
    matching.clear();
    for (auto& e : audit_events()) {
      if (e.value("event", "") == event) matching.push_back(std::move(e));
    }
    if (matching.size() >= at_least) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
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

ChildResult run_as(uid_t uid, gid_t gid, const std::function<int(int)>& fn) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) die("pipe2");
  pid_t pid = ::fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    ::close(pipe_fds[0]);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::alarm(child_alarm_seconds());  // a hung child fails its test instead of the whole run
    drop_privileges(uid, gid);
    int rc = fn(pipe_fds[1]);
    _exit(rc);
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
    drop_privileges(uid, gid);
    std::vector<char*> argv;
    for (const auto& a : argv_in) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    std::perror("execv");
    _exit(127);
  }
}

Background::~Background() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

int Background::wait() {
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  return decode_status(status);
}

std::string Background::output() const { return read_file(output_path_); }

std::string tcp_exchange(std::uint16_t port, const std::string& send, int timeout_ms) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out = "<connect failed>";
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
    out = exchange_on(fd, send, timeout_ms, true);
  }
  ::close(fd);
  return out;
}

std::string udp_exchange(std::uint16_t port, const std::string& send, int timeout_ms) {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out = "<connect failed>";
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
    out = exchange_on(fd, send, timeout_ms, false);
  }
  ::close(fd);
  return out;
}

std::string unix_exchange(const std::string& path, const std::string& send, int timeout_ms) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  std::string out = "<connect failed>";
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
    out = exchange_on(fd, send, timeout_ms, true);
  }
  ::close(fd);
  return out;
}

}  // namespace sbtest

namespace {

// `integration_tests --probe-listen-fds`: what a socket-activated program sees
// after `sockbroker run` exec'd it, as JSON on stdout.
int probe_listen_fds() {
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

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--probe-listen-fds") == 0) return probe_listen_fds();
  if (argc > 2 && std::strcmp(argv[1], "--echo-server") == 0) return echo_server(argv[2]);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
