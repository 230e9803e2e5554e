/* sockbroker_bench_bind_loop PORT COUNT WARMUP CPU: the program of the
 * supervised-bind row (item 9). Pins itself to CPU, then WARMUP + COUNT times:
 * socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC), bind 127.0.0.1:PORT, listen
 * 4096, close, timing bind(2) and listen(2) apart (CLOCK_MONOTONIC, as
 * std::chrono::steady_clock). Writes COUNT pairs of int64 nanoseconds {bind,
 * listen} to standard output at the end, and nothing else there.
 *
 * Run under `sockbroker run --` (each bind and listen trap to the supervisor,
 * which answers with the broker's socket at that address) and plainly on a
 * free port (the baseline: the kernel's own bind and listen), so the two
 * figures come from the same code. Exit 0, or 1 with one line on stderr. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int fail(const char *what) {
  fprintf(stderr, "sockbroker_bench_bind_loop: %s: %s\n", what, strerror(errno));
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: sockbroker_bench_bind_loop PORT COUNT WARMUP CPU\n");
    return 64;
  }
  const int port = atoi(argv[1]), count = atoi(argv[2]), warmup = atoi(argv[3]), cpu = atoi(argv[4]);
  if (port <= 0 || port > 65535 || count <= 0 || warmup < 0 || cpu < 0) {
    fprintf(stderr, "sockbroker_bench_bind_loop: bad arguments\n");
    return 64;
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) return fail("sched_setaffinity");

  int64_t *samples = calloc((size_t)count * 2, sizeof(int64_t));
  if (samples == NULL) return fail("calloc");
  struct sockaddr_in address;
  memset(&address, 0, sizeof address);
  address.sin_family = AF_INET;
  address.sin_port = htons((unsigned short)port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int i = 0; i < warmup + count; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail("socket");
    const int64_t t0 = now_ns();
    if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0) return fail("bind");
    const int64_t t1 = now_ns();
    if (listen(fd, 4096) != 0) return fail("listen");
    const int64_t t2 = now_ns();
    close(fd);
    if (i >= warmup) {
      samples[2 * (i - warmup)] = t1 - t0;
      samples[2 * (i - warmup) + 1] = t2 - t1;
    }
  }
  const char *p = (const char *)samples;
  size_t left = (size_t)count * 2 * sizeof(int64_t);
  while (left > 0) {
    ssize_t n = write(STDOUT_FILENO, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail("write samples");
    p += n;
    left -= (size_t)n;
  }
  return 0;
}
