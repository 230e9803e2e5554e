// What an epoll event can point at besides the control and signal descriptors:
// a client connection or a process holding grants.
#pragma once

namespace sockbroker::broker {

struct Watched {
  enum class Kind { session, holder };
  explicit Watched(Kind k) : kind(k) {}
  const Kind kind;
};

}  // namespace sockbroker::broker
