// Item 9: a program's own bind(2) under `sockbroker run` (supervised), against
//   (a) the same program's plain bind + listen of a free port, no broker, and
//   (b) the limit: one seccomp user-notification round trip answered by a
//       minimal supervisor written here, plus row 1's grant (BM_Grant_Shared),
//       both measured in this run.
//
// The program is sockbroker_bench_bind_loop (bind_loop.c): socket, bind
// 127.0.0.1:80, listen, close, in a loop, timing bind and listen apart. Under
// `sockbroker run --` each bind traps to the supervisor, which reads the
// address, asks the broker for the policy socket there (acquire_address) and
// puts it in place of the program's descriptor (NOTIF_ADDFD with SETFD); each
// listen traps too and is answered 0 (the granted socket listens already).
//
// Placement (argument 0 or 1): the program runs on CPU 0; the supervisor and
// the broker both on CPU 0 (same_cpu: every wake-up is a context switch) or
// both on CPU 1 (split_cpu: the program's trap and its answer cross CPUs, the
// supervisor's request to the broker does not). The limit's parts are placed
// alike: the notification round trip with its supervisor on the same CPU as
// the program or the other one, the grant always on one CPU (as supervisor and
// broker are). BM_Limit_NotifyGrant measures the limit in one piece: a minimal
// supervisor that, per notification, acquires "web" from the broker and ADDFDs it.
#include <fcntl.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sockbroker/client.hpp>

#include <cstddef>
#include <cstring>
#include <filesystem>
#include <optional>

#include "bench_env.hpp"
#include "descriptor_channel.hpp"
#include "latency_samples.hpp"
#include "shared_broker.hpp"

namespace sbbench {
namespace {

namespace fs = std::filesystem;

constexpr int kSamples = 2000;  // per repetition (kRepetitions)
constexpr int kWarmup = 500;
constexpr std::uint16_t kPolicyPort = 80;  // bench_policy()'s "web"
constexpr std::uint16_t kFreePort = 8090;  // no policy socket, no broker: the plain baseline
constexpr std::uint16_t kLimitPort = 92;   // the minimal supervisor's already-bound socket

// Older <linux/seccomp.h> than the kernel: values from the uapi header.
constexpr unsigned long kNewListener = 1UL << 3;        // SECCOMP_FILTER_FLAG_NEW_LISTENER
constexpr unsigned long kWaitKillableRecv = 1UL << 5;   // SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV

// Placement: the program on CPU 0, the supervisor (and broker) on CPU 0 or 1.
Placement placement_of(const benchmark::State& state) {
  return state.range(0) == 0 ? Placement::same_cpu : Placement::split_cpu;
}
void label(benchmark::State& state) { state.SetLabel(placement_name(placement_of(state))); }

void drop_to_nobody() {
  if (::setgroups(0, nullptr) != 0) die("setgroups");
  if (::setresgid(kNogroup, kNogroup, kNogroup) != 0) die("setresgid");
  if (::setresuid(kNobody, kNobody, kNobody) != 0) die("setresuid");
}

// uid 65534 executes the programs: the build tree may sit under a directory
// only root can enter, so they run from a private 0755 copy.
struct Programs {
  TempDir dir;
  std::string sockbroker, bind_loop;
  Programs() {
    sockbroker = dir.file("sockbroker");
    bind_loop = dir.file("sockbroker_bench_bind_loop");
    for (const auto& [from, to] : {std::pair{sockbroker_path(), sockbroker}, std::pair{bind_loop_path(), bind_loop}}) {
      std::error_code ec;
      fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
      if (ec) {
        errno = ec.value();
        die("copy " + from);
      }
      fs::permissions(to, fs::perms(0755), ec);
    }
  }
  static std::string bind_loop_path() { return SOCKBROKER_BENCH_BIND_LOOP_PATH; }
};
Programs& programs() {
  static Programs p;
  return p;
}

// bind, listen and bind + listen, from bind_loop's {bind, listen} pairs.
struct BindListenSamples {
  Samples bind{kSamples}, listen{kSamples}, both{kSamples};
  void add(const std::vector<std::int64_t>& pairs) {
    for (std::size_t i = 0; i + 1 < pairs.size(); i += 2) {
      bind.add_ns(pairs[i]);
      listen.add_ns(pairs[i + 1]);
      both.add_ns(pairs[i] + pairs[i + 1]);
    }
  }
  // p50_us/p99_us: bind alone; listen_*: listen alone; bind_listen_*: the two.
  void report(benchmark::State& state) {
    bind.report(state);
    state.counters["listen_p50_us"] = listen.percentile_us(0.50);
    state.counters["listen_p99_us"] = listen.percentile_us(0.99);
    state.counters["bind_listen_p50_us"] = both.percentile_us(0.50);
    state.counters["bind_listen_p99_us"] = both.percentile_us(0.99);
  }
};

// Runs argv as uid 65534 pinned to cpu (its children inherit that), its
// standard output into a pipe; returns everything it wrote, as int64s.
std::vector<std::int64_t> run_as_nobody(std::vector<std::string> argv, int cpu) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) die("pipe2");
  pid_t pid = spawn([&] {
    pin_self(cpu);
    if (::dup2(out[1], STDOUT_FILENO) < 0) return 126;
    drop_to_nobody();
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    return 127;
  });
  ::close(out[1]);
  auto values = read_samples(out[0]);
  ::close(out[0]);
  reap(pid, argv[0]);
  if (values.size() != 2 * static_cast<std::size_t>(kSamples)) {
    errno = 0;
    die(argv[0] + " wrote " + std::to_string(values.size()) + " values, not " + std::to_string(2 * kSamples));
  }
  return values;
}

// ---- the figure: the program's own bind under `sockbroker run` ----

void BM_Supervised_Bind(benchmark::State& state) {
  label(state);
  Broker& broker = shared_broker();
  pin_self(0);
  const int supervisor_cpu = peer_cpu(placement_of(state));
  pin(broker.pid(), supervisor_cpu);
  auto& p = programs();
  BindListenSamples samples;
  for (auto _ : state) {
    // `sockbroker run` is started on the supervisor's CPU; the program pins
    // itself to CPU 0 once it runs.
    samples.add(run_as_nobody({p.sockbroker, "--control", broker.control(), "run", "--", p.bind_loop,
                               std::to_string(kPolicyPort), std::to_string(kSamples), std::to_string(kWarmup), "0"},
                              supervisor_cpu));
  }
  samples.report(state);
}

// ---- baseline (a): the same program binding a free port itself ----

void BM_Plain_BindListen(benchmark::State& state) {
  state.SetLabel("no broker");
  pin_self(0);
  auto& p = programs();
  BindListenSamples samples;
  for (auto _ : state) {
    samples.add(run_as_nobody({p.bind_loop, std::to_string(kFreePort), std::to_string(kSamples),
                               std::to_string(kWarmup), "0"},
                              0));
  }
  samples.report(state);
}

// ---- baseline (b): one seccomp user-notification round trip ----

enum class Answer {
  error,   // SECCOMP_IOCTL_NOTIF_SEND with an error: the least a supervisor can do
  addfd,   // NOTIF_ADDFD (SETFD) of an already-bound socket, then SEND 0: what a served bind needs
  grant,   // acquire("web") from the broker, ADDFD it, SEND 0: the limit in one piece
};

// The program's side: the filter sends bind(2) to the supervisor (the same
// flags as `sockbroker run`'s: NO_NEW_PRIVS, NEW_LISTENER, WAIT_KILLABLE_RECV),
// then socket + timed bind + close in a loop, as bind_loop does.
int limit_program(int channel, int report, Answer answer) {
  pin_self(0);
  drop_to_nobody();
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die("PR_SET_NO_NEW_PRIVS");
  // bind goes to the supervisor; everything else runs. (No architecture
  // check: only this native process runs under it.)
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_bind, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  long listener = ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, kNewListener | kWaitKillableRecv, &program);
  if (listener < 0) die("seccomp(NEW_LISTENER)");
  // Handed over as `sockbroker run`'s child hands its listener over.
  if (!sockbroker::cli::send_descriptor(channel, static_cast<int>(listener), std::span<const char>("l", 1))) {
    die("sendmsg listener");
  }
  ::close(static_cast<int>(listener));
  ::close(channel);

  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(kPolicyPort);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::vector<std::int64_t> ns;
  ns.reserve(kSamples);
  for (int i = 0; i < kWarmup + kSamples; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    auto t0 = now_ns();
    int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
    auto t1 = now_ns();
    if (answer == Answer::error ? (rc == 0 || errno != EACCES) : rc != 0) die("bind under the minimal supervisor");
    ::close(fd);
    if (i >= kWarmup) ns.push_back(t1 - t0);
  }
  write_samples(report, ns);
  return 0;
}

// The minimal supervisor: blocks in NOTIF_RECV (no poll, no signals), answers
// with the least work `answer` needs, and runs until it is killed.
int limit_supervisor(int channel, int cpu, Answer answer, const std::string& control) {
  pin_self(cpu);
  char byte;
  sockbroker::UniqueFd listener = sockbroker::cli::receive_descriptor(channel, {&byte, 1});
  if (!listener) die("recvmsg listener (none received)");
  ::close(channel);
  sockbroker::UniqueFd bound;
  std::optional<sockbroker::Client> client;
  if (answer == Answer::addfd) {
    bound.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(kLimitPort);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (!bound || ::bind(bound.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(bound.get(), 4096) != 0) {
      die("the minimal supervisor's socket");
    }
  }
  if (answer == Answer::grant) {
    drop_to_nobody();  // the broker's rule grants "web" to nobody, as to `sockbroker run`
    auto connected = sockbroker::Client::connect(control);
    if (!connected) {
      errno = 0;
      die("connect to the broker: " + connected.error().message);
    }
    client.emplace(std::move(*connected));
  }
  seccomp_notif_sizes sizes{};
  if (::syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) != 0) die("SECCOMP_GET_NOTIF_SIZES");
  std::vector<std::uint64_t> notif_buffer((std::max<std::size_t>(sizes.seccomp_notif, sizeof(seccomp_notif)) + 7) / 8);
  std::vector<std::uint64_t> resp_buffer((std::max<std::size_t>(sizes.seccomp_notif_resp, sizeof(seccomp_notif_resp)) + 7) / 8);
  auto* request = reinterpret_cast<seccomp_notif*>(notif_buffer.data());
  auto* response = reinterpret_cast<seccomp_notif_resp*>(resp_buffer.data());
  for (;;) {
    std::memset(request, 0, notif_buffer.size() * sizeof(std::uint64_t));
    if (::ioctl(listener.get(), SECCOMP_IOCTL_NOTIF_RECV, request) != 0) {
      if (errno == EINTR || errno == ENOENT) continue;
      die("SECCOMP_IOCTL_NOTIF_RECV");
    }
    std::memset(response, 0, resp_buffer.size() * sizeof(std::uint64_t));
    response->id = request->id;
    if (answer == Answer::error) {
      response->error = -EACCES;
    } else {
      std::optional<sockbroker::Grant> grant;
      int source = bound.get();
      if (answer == Answer::grant) {
        auto granted = client->acquire("web");
        if (!granted) {
          errno = 0;
          die("acquire web: " + granted.error().message);
        }
        grant.emplace(std::move(*granted));
        source = grant->fd.get();
      }
      seccomp_notif_addfd addfd{};
      addfd.id = request->id;
      addfd.flags = SECCOMP_ADDFD_FLAG_SETFD;
      addfd.srcfd = static_cast<std::uint32_t>(source);
      addfd.newfd = static_cast<std::uint32_t>(request->data.args[0]);
      addfd.newfd_flags = O_CLOEXEC;  // the program's socket is SOCK_CLOEXEC
      if (::ioctl(listener.get(), SECCOMP_IOCTL_NOTIF_ADDFD, &addfd) < 0) die("SECCOMP_IOCTL_NOTIF_ADDFD");
    }
    if (::ioctl(listener.get(), SECCOMP_IOCTL_NOTIF_SEND, response) != 0 && errno != ENOENT) {
      die("SECCOMP_IOCTL_NOTIF_SEND");
    }
  }
}

void limit(benchmark::State& state, Answer answer) {
  label(state);
  pin_self(0);
  const int supervisor_cpu = peer_cpu(placement_of(state));
  std::string control;
  if (answer == Answer::grant) {
    Broker& broker = shared_broker();
    pin(broker.pid(), supervisor_cpu);
    control = broker.control();
  }
  Samples samples(kSamples);
  for (auto _ : state) {
    int channel[2], report[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, channel) != 0) die("socketpair");
    if (::pipe2(report, O_CLOEXEC) != 0) die("pipe2");
    pid_t supervisor = spawn([&] {
      ::close(channel[1]);
      ::close(report[0]);
      ::close(report[1]);
      return limit_supervisor(channel[0], supervisor_cpu, answer, control);
    });
    pid_t program = spawn([&] {
      ::close(channel[0]);
      ::close(report[0]);
      return limit_program(channel[1], report[1], answer);
    });
    ::close(channel[0]);
    ::close(channel[1]);
    ::close(report[1]);
    samples.add_all(read_samples(report[0]));
    ::close(report[0]);
    reap(program, "the minimal supervisor's program");
    ::kill(supervisor, SIGKILL);
    ::waitpid(supervisor, nullptr, 0);
  }
  samples.report(state);
}

void BM_Limit_NotifyError(benchmark::State& state) { limit(state, Answer::error); }
void BM_Limit_NotifyAddfd(benchmark::State& state) { limit(state, Answer::addfd); }
void BM_Limit_NotifyGrant(benchmark::State& state) { limit(state, Answer::grant); }

// ---- where the time goes: the broker's side of an address request ----

// What the supervisor asks the broker, over a kept-open connection, as
// BM_Grant_Shared asks by name: the difference is the address lookup.
void BM_Grant_AcquireAddress(benchmark::State& state) {
  label(state);
  Broker& broker = shared_broker();
  pin_self(0);
  pin(broker.pid(), peer_cpu(placement_of(state)));
  auto client = as_nobody([&] { return sockbroker::Client::connect(broker.control()); });
  if (!client) {
    errno = 0;
    die("connect to the broker: " + client.error().message);
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(kPolicyPort);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  auto once = [&] {
    auto grant = client->acquire_address(reinterpret_cast<sockaddr*>(&address), sizeof address, SOCK_STREAM, true);
    if (!grant) {
      errno = 0;
      die("acquire_address 127.0.0.1:80: " + grant.error().message);
    }
  };
  Samples samples(kSamples);
  for (auto _ : state) time_each(samples, kWarmup, kSamples, once);
  samples.report(state);
}

#define SBBENCH_PLACED(fn) \
  BENCHMARK(fn)->Arg(0)->Arg(1)->Iterations(1)->Repetitions(kRepetitions)->Unit(benchmark::kMillisecond)
SBBENCH_PLACED(BM_Supervised_Bind);
SBBENCH_PLACED(BM_Limit_NotifyError);
SBBENCH_PLACED(BM_Limit_NotifyAddfd);
SBBENCH_PLACED(BM_Limit_NotifyGrant);
SBBENCH_PLACED(BM_Grant_AcquireAddress);
BENCHMARK(BM_Plain_BindListen)->Arg(0)->Iterations(1)->Repetitions(kRepetitions)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace sbbench
