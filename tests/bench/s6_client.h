/* libs6 calls for the s6-fdholder comparison (s6_client.c). 0 on success,
 * -1 with errno set on failure. */
#ifndef SBBENCH_S6_CLIENT_H
#define SBBENCH_S6_CLIENT_H

#ifdef __cplusplus
extern "C" {
#endif

int sbbench_s6_store(const char *path, int fd, const char *id);
int sbbench_s6_connect_retrieve_close(const char *path, const char *id);

#ifdef __cplusplus
}
#endif

#endif
