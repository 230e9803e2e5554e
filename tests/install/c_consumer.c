/* An out-of-tree C program built against an *installed* libsockbroker with
 * `cc $(pkg-config --cflags --libs sockbroker)` (tests/install/run.sh builds it
 * twice: shared, and static with `pkg-config --static`). It asks a real broker
 * for one socket and exits 0 only if it received a listening descriptor that
 * is close-on-exec, as client.h promises.
 *
 * Usage: c_consumer CONTROL_PATH SOCKET_NAME */
#define _POSIX_C_SOURCE 200809L /* -std=c11 hides fcntl() and getsockopt() otherwise */

#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sockbroker/client.h>

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s CONTROL_PATH SOCKET_NAME\n", argv[0]);
    return 64;
  }
  const char *control = argv[1];
  const char *name = argv[2];

  int fd = sockbroker_acquire(control, name, 0);
  if (fd < 0) {
    fprintf(stderr, "c_consumer: socket \"%s\": %s: %s\n", name, sockbroker_strerror(fd), sockbroker_last_error());
    return 1;
  }
  int listening = 0;
  socklen_t length = sizeof listening;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) != 0) {
    perror("c_consumer: getsockopt(SO_ACCEPTCONN)");
    return 1;
  }
  if (!listening) {
    fprintf(stderr, "c_consumer: socket \"%s\" arrived as fd %d but is not listening\n", name, fd);
    return 1;
  }
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0) {
    perror("c_consumer: fcntl(F_GETFD)");
    return 1;
  }
  if (!(flags & FD_CLOEXEC)) {
    fprintf(stderr, "c_consumer: socket \"%s\" arrived as fd %d without close-on-exec\n", name, fd);
    return 1;
  }
  printf("c_consumer: got listening socket \"%s\" as fd %d\n", name, fd);
  if (close(fd) != 0) {
    perror("c_consumer: close");
    return 1;
  }
  return 0;
}
