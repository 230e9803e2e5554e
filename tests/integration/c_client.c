/* A service written in C against include/sockbroker/client.h: compiled as C so
 * that the header's C-compatibility is tested too. */
#define _GNU_SOURCE /* accept4 */
#include <sockbroker/client.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "c_client.h"

int c_client_serve_one(const char *control, const char *name, char *error, size_t error_size) {
  int fd = sockbroker_acquire(control, name, 0);
  if (fd < 0) {
    snprintf(error, error_size, "%s: %s", sockbroker_strerror(fd), sockbroker_last_error());
    return fd;
  }
  if (sockbroker_lockdown(0) != 0) {
    snprintf(error, error_size, "lockdown: %s", sockbroker_last_error());
    return SOCKBROKER_E_SYSTEM;
  }
  /* Under lockdown a bind of our own is refused... */
  int mine = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in any;
  memset(&any, 0, sizeof any);
  any.sin_family = AF_INET;
  any.sin_port = htons(8081);
  if (bind(mine, (struct sockaddr *)&any, sizeof any) == 0 || errno != EPERM) {
    snprintf(error, error_size, "bind was not refused with EPERM");
    return SOCKBROKER_E_SYSTEM;
  }
  close(mine);
  /* ...while the granted socket serves. */
  int client = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
  if (client < 0) {
    snprintf(error, error_size, "accept: %s", strerror(errno));
    return SOCKBROKER_E_SYSTEM;
  }
  static const char answer[] = "hello from C";
  ssize_t sent = write(client, answer, sizeof answer - 1);
  close(client);
  close(fd);
  return sent == (ssize_t)(sizeof answer - 1) ? 0 : SOCKBROKER_E_SYSTEM;
}

int c_client_kept_open(const char *control, const char *name, int times) {
  int error = 0;
  sockbroker_conn *conn = sockbroker_connect(control, &error);
  if (conn == NULL) return error;
  for (int i = 0; i < times; ++i) {
    int fd = sockbroker_conn_acquire(conn, name, 0);
    if (fd < 0) {
      sockbroker_disconnect(conn);
      return fd;
    }
    close(fd);
  }
  sockbroker_disconnect(conn);
  return 0;
}
