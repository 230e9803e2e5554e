// How the seccomp listener travels from `sockbroker run`'s child, which made
// it, to the supervisor: one descriptor in one message (SCM_RIGHTS) over the
// socketpair between them. A file of its own so that the benchmarks standing
// in for the supervisor (tests/bench/supervised_bench.cpp,
// supervisor_steps.cpp) hand their listener over with this very code rather
// than a copy of it.
#pragma once

#include <span>

#include <sockbroker/fd.hpp>

namespace sockbroker::cli {

// Sends fd in one message whose bytes are payload (at least one: a message
// with no data may carry no descriptor). MSG_NOSIGNAL: a peer gone is an error,
// not a SIGPIPE.
[[nodiscard]] Status send_descriptor(int channel, int fd, std::span<const char> payload);

// Receives one message into payload and returns the descriptor it carries,
// close-on-exec; an invalid descriptor when the peer closed its end without
// sending one (the child exited first: it said why on stderr).
[[nodiscard]] UniqueFd receive_descriptor(int channel, std::span<char> payload);

}  // namespace sockbroker::cli
