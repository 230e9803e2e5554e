/* sockbroker_bench_bind PORT: binds and listens on 127.0.0.1:PORT, then exits.
 * What a service does for itself under authbind, which scripts/bench.sh
 * compares with `sockbroker run -s NAME -- true` (item 6). Exit 0, or 1 with
 * one line on stderr. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: sockbroker_bench_bind PORT  (binds and listens on 127.0.0.1:PORT, exits 0)\n");
    return 64;
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fprintf(stderr, "sockbroker_bench_bind: socket: %s\n", strerror(errno));
    return 1;
  }
  struct sockaddr_in address;
  memset(&address, 0, sizeof address);
  address.sin_family = AF_INET;
  address.sin_port = htons((unsigned short)atoi(argv[1]));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0 || listen(fd, 511) != 0) {
    fprintf(stderr, "sockbroker_bench_bind: bind 127.0.0.1:%s: %s\n", argv[1], strerror(errno));
    return 1;
  }
  close(fd);
  return 0;
}
