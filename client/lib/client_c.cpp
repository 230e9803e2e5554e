// The C API (include/sockbroker/client.h), a thin layer over the C++ one.
#include <sockbroker/client.h>
#include <sockbroker/client.hpp>

#include <new>
#include <string>

struct sockbroker_conn {
  sockbroker::Client client;
};

namespace {

// The broker's explanation of the last failure, per thread: C callers get a
// code from the call and the sentence from sockbroker_last_error().
thread_local std::string last_error;

int fail(const sockbroker::Error& error) {
  last_error = error.message;
  if (error.code == SOCKBROKER_E_SYSTEM && error.sys_errno != 0) errno = error.sys_errno;
  return error.code != 0 ? error.code : SOCKBROKER_E_SYSTEM;
}

int granted(sockbroker::Result<sockbroker::Grant> grant) {
  if (!grant) return fail(grant.error());
  last_error.clear();
  return grant->fd.release();
}

std::string_view control_of(const char* control) { return control != nullptr ? std::string_view(control) : std::string_view(); }

}  // namespace

extern "C" {

int sockbroker_acquire(const char* control, const char* name, int flags) {
  if (name == nullptr) return fail({SOCKBROKER_E_INVALID, EINVAL, "socket name is NULL"});
  if (flags != 0) return fail({SOCKBROKER_E_INVALID, EINVAL, "flags must be 0"});
  return granted(sockbroker::acquire(name, control_of(control)));
}

int sockbroker_acquire_netns(const char* control, const char* name, int netns_fd, int flags) {
  if (name == nullptr) return fail({SOCKBROKER_E_INVALID, EINVAL, "socket name is NULL"});
  auto client = sockbroker::Client::connect(control_of(control));
  if (!client) return fail(client.error());
  return granted(client->acquire_in_netns(name, netns_fd, flags));
}

sockbroker_conn* sockbroker_connect(const char* control, int* error) {
  auto client = sockbroker::Client::connect(control_of(control));
  if (!client) {
    int code = fail(client.error());
    if (error != nullptr) *error = code;
    return nullptr;
  }
  auto* conn = new (std::nothrow) sockbroker_conn{std::move(*client)};
  if (conn == nullptr) {
    int code = fail({SOCKBROKER_E_SYSTEM, ENOMEM, "out of memory"});
    if (error != nullptr) *error = code;
  }
  return conn;
}

int sockbroker_conn_acquire(sockbroker_conn* conn, const char* name, int flags) {
  if (conn == nullptr || name == nullptr) return fail({SOCKBROKER_E_INVALID, EINVAL, "connection or name is NULL"});
  return granted(conn->client.acquire(name, flags));
}

void sockbroker_disconnect(sockbroker_conn* conn) { delete conn; }

const char* sockbroker_strerror(int code) {
  switch (code) {
    case SOCKBROKER_E_UNAVAILABLE: return "the socket broker is not reachable";
    case SOCKBROKER_E_UNKNOWN: return "no socket of that name in the broker's policy";
    case SOCKBROKER_E_DENIED: return "the broker's policy does not grant this socket to the caller";
    case SOCKBROKER_E_QUOTA: return "a grant or client limit of the broker is reached";
    case SOCKBROKER_E_BIND: return "the broker could not create or bind the socket";
    case SOCKBROKER_E_PROTOCOL: return "malformed or unexpected exchange with the broker";
    case SOCKBROKER_E_INVALID: return "invalid argument";
    case SOCKBROKER_E_SYSTEM: return "local system error";
    default: return code >= 0 ? "success" : "unknown sockbroker error";
  }
}

const char* sockbroker_last_error(void) { return last_error.c_str(); }

int sockbroker_lockdown(unsigned flags) {
  if ((flags & ~SOCKBROKER_LOCKDOWN_ALLOW_LISTEN) != 0) return -EINVAL;
  auto status = sockbroker::lockdown({(flags & SOCKBROKER_LOCKDOWN_ALLOW_LISTEN) != 0});
  if (!status) {
    last_error = status.error().message;
    return -(status.error().sys_errno != 0 ? status.error().sys_errno : EPERM);
  }
  return 0;
}

}  // extern "C"
