#include "bench_env.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sockbroker/client.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;

namespace sbbench {

void die(const std::string& what) {
  std::cerr << "sockbroker_bench: " << what << ": " << std::strerror(errno) << '\n';
  std::abort();
}

void enter_private_netns() {
  if (::unshare(CLONE_NEWNET) != 0) die("unshare(CLONE_NEWNET)");
  // A new network namespace starts with lo down.
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  ifreq request{};
  std::strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(fd, SIOCGIFFLAGS, &request) != 0) die("SIOCGIFFLAGS lo");
  request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP);
  if (::ioctl(fd, SIOCSIFFLAGS, &request) != 0) die("SIOCSIFFLAGS lo");
  ::close(fd);
}

void raise_fd_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) die("getrlimit");
  // 65536 covers 10,000 broker sockets plus slack; a container may forbid
  // raising the hard limit even to root, and then its hard limit is what we get.
  rlimit wanted{std::max<rlim_t>(limit.rlim_max, 65536), std::max<rlim_t>(limit.rlim_max, 65536)};
  if (::setrlimit(RLIMIT_NOFILE, &wanted) == 0) return;
  if (errno != EPERM) die("setrlimit(RLIMIT_NOFILE)");
  limit.rlim_cur = limit.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) die("setrlimit(RLIMIT_NOFILE)");
}

const char* placement_name(Placement p) { return p == Placement::same_cpu ? "same_cpu" : "split_cpu"; }

int peer_cpu(Placement p) {
  // On a one-CPU machine "split" degrades to "same"; the table prints nproc.
  if (p == Placement::same_cpu || std::thread::hardware_concurrency() < 2) return 0;
  return 1;
}

namespace {
void pin_task(pid_t tid, int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (cpu >= 0) {
    CPU_SET(cpu, &set);
  } else {
    for (unsigned i = 0; i < std::max(1u, std::thread::hardware_concurrency()); ++i) CPU_SET(i, &set);
  }
  if (::sched_setaffinity(tid, sizeof set, &set) != 0) die("sched_setaffinity " + std::to_string(tid));
}
}  // namespace

void pin(pid_t pid, int cpu) {
  if (pid == 0) pid = ::getpid();
  // sched_setaffinity acts on one thread: pin every task of the process.
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  std::error_code ec;
  for (const auto& task : fs::directory_iterator(dir, ec)) {
    pin_task(static_cast<pid_t>(std::stol(task.path().filename().string())), cpu);
  }
  if (ec) die("list " + dir);
}

void pin_self(int cpu) { pin_task(0, cpu); }

void unpin_self() { pin_task(0, -1); }

void become_nobody_effective() {
  // setegid first: once euid is not 0 the process may no longer change its gid.
  if (::setgroups(0, nullptr) != 0) die("setgroups");
  if (::setresgid(static_cast<gid_t>(-1), kNogroup, static_cast<gid_t>(-1)) != 0) die("setresgid");
  if (::setresuid(static_cast<uid_t>(-1), kNobody, static_cast<uid_t>(-1)) != 0) die("setresuid");
}

void restore_root_effective() {
  if (::setresuid(static_cast<uid_t>(-1), 0, static_cast<uid_t>(-1)) != 0) die("setresuid(root)");
  if (::setresgid(static_cast<gid_t>(-1), 0, static_cast<gid_t>(-1)) != 0) die("setresgid(root)");
}

TempDir::TempDir() {
  std::string pattern = (fs::temp_directory_path() / "sockbroker-bench-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) die("mkdtemp");
  path_ = pattern;
  // uid 65534 must reach the control socket inside.
  if (::chmod(path_.c_str(), 0755) != 0) die("chmod " + path_);
}

TempDir::~TempDir() {
  std::error_code ignored;
  fs::remove_all(path_, ignored);
}

void TempDir::write(const std::string& name, const std::string& content) const {
  std::ofstream out(file(name));
  out << content;
  if (!out) die("write " + file(name));
}

std::string sockbrokerd_path() {
  // Another build's broker, for a before/after comparison with the same bench.
  if (const char* other = std::getenv("SBBENCH_SOCKBROKERD"); other != nullptr && *other != '\0') return other;
  return SOCKBROKERD_PATH;
}
std::string sockbroker_path() {
  if (const char* other = std::getenv("SBBENCH_SOCKBROKER"); other != nullptr && *other != '\0') return other;
  return SOCKBROKER_CLI_PATH;
}

void child_prologue() {
  // A benchmark that dies must not leave children running.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
}

namespace {
// For profiling (docs/PERFORMANCE.md): e.g. SOCKBROKER_BENCH_BROKER_PREFIX="valgrind
// --tool=callgrind" and SOCKBROKER_BENCH_BROKER_ARGS=--no-confine. Split on spaces.
std::vector<std::string> words_of(const char* text) {
  std::vector<std::string> words;
  std::istringstream in(text != nullptr ? text : "");
  for (std::string word; in >> word;) words.push_back(word);
  return words;
}
}  // namespace

Broker::Broker(const TempDir& dir, const std::string& policy_toml) {
  dir.write("policy.toml", policy_toml);
  control_ = dir.file("control.sock");
  std::vector<std::string> args = words_of(std::getenv("SOCKBROKER_BENCH_BROKER_PREFIX"));
  for (std::string a : {sockbrokerd_path(), std::string("--policy"), dir.file("policy.toml"), std::string("--control"),
                        control_, std::string("--audit"), dir.file("audit.log"), std::string("--log-level"),
                        std::string("warn")}) {
    args.push_back(std::move(a));
  }
  for (auto& a : words_of(std::getenv("SOCKBROKER_BENCH_BROKER_ARGS"))) args.push_back(std::move(a));
  std::string log = dir.file("broker.log");
  auto started = std::chrono::steady_clock::now();
  pid_ = ::fork();
  if (pid_ < 0) die("fork");
  if (pid_ == 0) {
    int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0 || ::dup2(out, 1) < 0 || ::dup2(out, 2) < 0) ::_exit(126);
    ::syscall(SYS_close_range, 3U, ~0U, 0U);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());  // the prefix may be a bare program name
    ::_exit(127);
  }
  // Ready means a request was answered, not merely that the path exists.
  auto deadline = started + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    auto client = sockbroker::Client::connect(control_);
    if (client && client->list()) {
      startup_ = std::chrono::steady_clock::now() - started;
      return;
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      std::ifstream in(log);
      std::cerr << in.rdbuf();
      errno = 0;
      die("sockbrokerd exited during start-up (its log is above)");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  errno = ETIMEDOUT;
  die("sockbrokerd did not answer within 60 s");
}

Broker::~Broker() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
}

long Broker::rss_kib() const {
  std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  errno = ENOENT;
  die("no VmRSS for the broker");
}

std::vector<std::uint64_t> Broker::socket_inodes() const {
  std::vector<std::uint64_t> inodes;
  std::string dir = "/proc/" + std::to_string(pid_) + "/fd";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::error_code link_ec;
    std::string target = fs::read_symlink(entry.path(), link_ec).string();
    if (!link_ec && target.rfind("socket:[", 0) == 0) {
      inodes.push_back(std::stoull(target.substr(8)));
    }
  }
  if (ec) die("list " + dir);
  std::sort(inodes.begin(), inodes.end());
  return inodes;
}

std::string bench_policy() {
  return R"([broker]
max_clients = 4096
max_clients_per_uid = 4096
max_grants_per_client = 100000

[socket.web]
listen = "127.0.0.1:80"
backlog = 4096

[[socket.web.allow]]
user = "nobody"

[socket.workers]
listen = "127.0.0.1:81"
reuse_port = true

[[socket.workers.allow]]
user = "nobody"
)";
}

std::string scale_policy(int sockets) {
  std::ostringstream out;
  out << "[broker]\nmax_clients = 4096\nmax_clients_per_uid = 4096\n";
  for (int i = 0; i < sockets; ++i) {
    out << "\n[socket.bench" << i << "]\nlisten = \"127.0.0.1:" << 10000 + i
        << "\"\n\n[[socket.bench" << i << ".allow]]\nuser = \"nobody\"\n";
  }
  return out.str();
}

void reap(pid_t pid, const std::string& what) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) die("waitpid " + what);
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    errno = 0;
    die(what + " failed (status " + std::to_string(status) + ")");
  }
}

}  // namespace sbbench
