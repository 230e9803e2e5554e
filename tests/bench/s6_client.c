/* The s6-fdholder side of the comparison: connect + retrieve + close done
 * in-process with libs6, what a service linking libs6 does once. C, because
 * skalibs' headers do not compile as C++. Built only when libs6-dev is found. */
#include <unistd.h>

#include <s6/fdholder.h>
#include <skalibs/tai.h>

#include "s6_client.h"

int sbbench_s6_store(const char *path, int fd, const char *id) {
  s6_fdholder_t holder = S6_FDHOLDER_ZERO
  tain deadline;
  tain_now_g();
  tain_addsec_g(&deadline, 5);
  if (!s6_fdholder_start_g(&holder, path, &deadline)) return -1;
  /* tain_infinite: the daemon keeps it until deleted. */
  int ok = s6_fdholder_store_g(&holder, fd, id, &tain_infinite, &deadline);
  s6_fdholder_end(&holder);
  return ok ? 0 : -1;
}

int sbbench_s6_connect_retrieve_close(const char *path, const char *id) {
  s6_fdholder_t holder = S6_FDHOLDER_ZERO
  tain deadline;
  tain_now_g();
  tain_addsec_g(&deadline, 2);
  if (!s6_fdholder_start_g(&holder, path, &deadline)) return -1;
  int fd = s6_fdholder_retrieve_g(&holder, id, &deadline);
  s6_fdholder_end(&holder);
  if (fd < 0) return -1;
  close(fd);
  return 0;
}
