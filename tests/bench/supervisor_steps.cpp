// sockbroker_bench_supervisor_steps [--filtered]: what each step the
// supervisor takes per bind notification costs alone (docs/PERFORMANCE.md,
// item 9, "where the time goes"). Root; pins itself to CPU 0 and runs as uid
// 65534. A child stands for the program: it holds an unbound TCP socket and
// the address it would bind, under a filter that sends bind(2) to a listener
// (so NOTIF_ID_VALID has a listener to ask). The parent, standing for the
// supervisor, times each step 20,000 times after 2,000 unrecorded and prints
// the median. --filtered first loads the supervisor's own seccomp filter
// (lockdown_layers::apply_supervisor_seccomp), which runs on each of its
// system calls. carry_over is the product's own (client/cli/socket_carryover.cpp).
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
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "descriptor_channel.hpp"
#include "lockdown_layers.hpp"
#include "socket_carryover.hpp"

namespace {

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "sockbroker_bench_supervisor_steps: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

long long now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

template <class Step>
void measure(const char* name, Step step) {
  for (int i = 0; i < 2000; ++i) step();
  std::vector<long long> ns;
  ns.reserve(20000);
  for (int i = 0; i < 20000; ++i) {
    const long long t0 = now_ns();
    step();
    ns.push_back(now_ns() - t0);
  }
  std::nth_element(ns.begin(), ns.begin() + static_cast<std::ptrdiff_t>(ns.size() / 2), ns.end());
  std::printf("%-58s p50 %6.2f us\n", name, static_cast<double>(ns[ns.size() / 2]) / 1000.0);
}

// The program's side: the socket (fd), the address, and the listener its filter made.
struct Shared {
  int fd;
  sockaddr_in* address;
};

}  // namespace

int main(int argc, char** argv) {
  const bool filtered = argc > 1 && std::strcmp(argv[1], "--filtered") == 0;
  if (::geteuid() != 0) {
    std::fprintf(stderr, "sockbroker_bench_supervisor_steps: run as root (it becomes uid 65534 itself)\n");
    return 77;
  }
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  CPU_SET(0, &cpus);
  if (::sched_setaffinity(0, sizeof cpus, &cpus) != 0) die("sched_setaffinity");
  if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) {
    die("become uid 65534");
  }
  // A changed uid made the process undumpable; the program of a real
  // supervisor is a fresh exec, which the supervisor may read and take from.
  ::prctl(PR_SET_DUMPABLE, 1);
  int channel[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, channel) != 0) die("socketpair");
  static sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(80);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

  const pid_t program = ::fork();
  if (program < 0) die("fork");
  if (program == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    Shared shared{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), &address};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die("PR_SET_NO_NEW_PRIVS");
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_bind, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog fprog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
    const int listener = static_cast<int>(::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &fprog));
    if (listener < 0) die("seccomp(NEW_LISTENER)");
    // As `sockbroker run`'s child hands its listener over, with what the
    // stand-in supervisor needs to know of the program as the message.
    if (!sockbroker::cli::send_descriptor(channel[1], listener, {reinterpret_cast<const char*>(&shared), sizeof shared})) {
      die("sendmsg");
    }
    ::pause();
    _exit(0);
  }
  Shared shared{};
  const sockbroker::UniqueFd received =
      sockbroker::cli::receive_descriptor(channel[0], {reinterpret_cast<char*>(&shared), sizeof shared});
  if (!received) die("recvmsg");
  const int listener = received.get();

  // What the broker grants: a listening socket.
  const int granted = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in own{};
  own.sin_family = AF_INET;
  own.sin_addr.s_addr = htonl(INADDR_LOOPBACK);  // port 0: the kernel's choice, no policy needed
  if (::bind(granted, reinterpret_cast<sockaddr*>(&own), sizeof own) != 0 || ::listen(granted, 16) != 0) {
    die("bind the stand-in for the granted socket");
  }
  if (filtered) {
    if (auto s = sockbroker::lockdown_layers::apply_supervisor_seccomp(); !s) die("apply_supervisor_seccomp");
  }
  std::printf("supervisor's seccomp filter: %s\n", filtered ? "loaded" : "not loaded");
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, program, 0));
  const int theirs = static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, shared.fd, 0));
  if (pidfd < 0 || theirs < 0) die("pidfd_open/pidfd_getfd");
  sockbroker::cli::PristineDefaults defaults;
  if (auto carried = sockbroker::cli::carry_over(theirs, granted, defaults); !carried) die("carry_over");

  measure("getpid (a system call that does nothing)", [] { ::syscall(SYS_getpid); });
  measure("wait4(WNOHANG) + poll(2 fds, none ready, 0)", [&] {
    int status;
    ::waitpid(-1, &status, WNOHANG);
    pollfd fds[2] = {{channel[0], POLLIN, 0}, {listener, POLLIN, 0}};
    ::poll(fds, 2, 0);
  });
  measure("pidfd_open + close", [&] { ::close(static_cast<int>(::syscall(SYS_pidfd_open, program, 0))); });
  measure("ioctl(SECCOMP_IOCTL_NOTIF_ID_VALID)", [&] {
    std::uint64_t id = 1;
    ::ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id);
  });
  measure("process_vm_readv (16-byte sockaddr_in)", [&] {
    sockaddr_in copy;
    iovec local{&copy, sizeof copy}, remote{shared.address, sizeof copy};
    if (::process_vm_readv(program, &local, 1, &remote, 1, 0) != sizeof copy) die("process_vm_readv");
  });
  measure("pidfd_getfd + close", [&] { ::close(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, shared.fd, 0))); });
  measure("getsockopt(SO_DOMAIN) + getsockname + getsockopt(SO_TYPE)", [&] {
    int value;
    socklen_t length = sizeof value;
    ::getsockopt(theirs, SOL_SOCKET, SO_DOMAIN, &value, &length);
    sockaddr_storage name;
    socklen_t name_length = sizeof name;
    ::getsockname(theirs, reinterpret_cast<sockaddr*>(&name), &name_length);
    length = sizeof value;
    ::getsockopt(theirs, SOL_SOCKET, SO_TYPE, &value, &length);
  });
  measure("carry_over (all of it)", [&] { (void)sockbroker::cli::carry_over(theirs, granted, defaults); });
  measure("  of which: socket(AF_INET, SOCK_STREAM) + close", [] {
    ::close(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  });
  measure("  of which: one getsockopt(TCP_NODELAY)", [&] {
    int value;
    socklen_t length = sizeof value;
    ::getsockopt(theirs, IPPROTO_TCP, 1, &value, &length);
  });
  const std::string fdinfo = "/proc/" + std::to_string(program) + "/fdinfo/" + std::to_string(shared.fd);
  measure("close-on-exec probe: open + read + close /proc/PID/fdinfo/FD", [&] {
    const int info = ::open(fdinfo.c_str(), O_RDONLY | O_CLOEXEC);
    char text[512];
    if (info < 0 || ::read(info, text, sizeof text) <= 0) die("read fdinfo");
    ::close(info);
  });
  measure("fstat", [&] {
    struct stat st;
    ::fstat(granted, &st);
  });
  ::kill(program, SIGKILL);
  ::waitpid(program, nullptr, 0);
  return 0;
}
