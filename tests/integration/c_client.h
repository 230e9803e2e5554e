/* The C client of c_client.c, callable from the C++ tests. */
#ifndef SOCKBROKER_TEST_C_CLIENT_H
#define SOCKBROKER_TEST_C_CLIENT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Acquires `name`, locks down, checks bind is refused, answers one connection.
   0 on success, else a SOCKBROKER_E_* code with `error` filled. */
int c_client_serve_one(const char *control, const char *name, char *error, size_t error_size);

/* Acquires `name` `times` times over one kept-open connection. 0 or a code. */
int c_client_kept_open(const char *control, const char *name, int times);

#ifdef __cplusplus
}
#endif

#endif
