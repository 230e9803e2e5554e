/* libsockbroker: ask sockbrokerd for a named, already-bound socket.
 *
 * The broker (root) owns every privileged-port and SO_REUSEPORT bind on the host;
 * an unprivileged service asks for a socket by the name the operator gave it in
 * the policy and receives the bound descriptor. See sockbroker(1) and README.md.
 *
 * Every function is thread-safe except on a single sockbroker_conn, which must
 * not be used from two threads at once. Returned descriptors are close-on-exec. */
#ifndef SOCKBROKER_CLIENT_H
#define SOCKBROKER_CLIENT_H

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes: negative and distinct, so that "fd >= 0 or code" fits one int. */
#define SOCKBROKER_E_UNAVAILABLE (-1) /* no broker listening at the control path */
#define SOCKBROKER_E_UNKNOWN (-2)     /* the policy has no socket of that name */
#define SOCKBROKER_E_DENIED (-3)      /* the policy does not grant it to this caller */
#define SOCKBROKER_E_QUOTA (-4)       /* a grant or client limit is reached; try later */
#define SOCKBROKER_E_BIND (-5)        /* the broker could not create or bind the socket */
#define SOCKBROKER_E_PROTOCOL (-6)    /* malformed or unexpected exchange */
#define SOCKBROKER_E_INVALID (-7)     /* bad argument */
#define SOCKBROKER_E_SYSTEM (-8)      /* local system error (see errno) */

/* Flags for sockbroker_lockdown(). */
#define SOCKBROKER_LOCKDOWN_ALLOW_LISTEN (1u << 0)

/* control: the broker's control socket path, or NULL for $SOCKBROKER_CONTROL,
   else the default (/run/sockbroker/control.sock).
   Returns a descriptor (close-on-exec) >= 0, or a negative SOCKBROKER_E_* code.
   flags: 0. */
int sockbroker_acquire(const char *control, const char *name, int flags);

/* As sockbroker_acquire, for a socket the policy binds in the network namespace
   netns_fd refers to (netns = "request"). */
int sockbroker_acquire_netns(const char *control, const char *name, int netns_fd, int flags);

/* A kept-open connection for services that acquire many sockets. */
typedef struct sockbroker_conn sockbroker_conn;
sockbroker_conn *sockbroker_connect(const char *control, int *error); /* NULL and *error on failure */
int sockbroker_conn_acquire(sockbroker_conn *conn, const char *name, int flags);
void sockbroker_disconnect(sockbroker_conn *conn);

/* One line, for humans, describing a SOCKBROKER_E_* code. */
const char *sockbroker_strerror(int code);

/* The broker's own explanation of the last failure on this thread (names the
   socket, the reason and, for denials, the identity the broker saw), or "". */
const char *sockbroker_last_error(void);

/* Install the lockdown seccomp filter on every thread of the calling process:
   bind(2), listen(2) (unless SOCKBROKER_LOCKDOWN_ALLOW_LISTEN), io_uring, SCTP
   sockets, ptrace, pidfd_getfd, process_vm_readv/writev and the port-stealing
   setsockopt options fail with EPERM from now on; foreign-ABI system calls kill
   the process. Where the kernel has Landlock (ABI >= 2), also a Landlock domain,
   which keeps the process out of every other process's memory (/proc/PID/mem)
   and, with network rules (ABI >= 4), refuses TCP binds by any route.
   Returns 0 or -errno. Irreversible. */
int sockbroker_lockdown(unsigned flags);

#ifdef __cplusplus
}
#endif

#endif /* SOCKBROKER_CLIENT_H */
