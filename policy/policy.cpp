// The policy snapshot: lookup by name and the "can the bound socket be kept" test
// the broker uses on reload.
#include "policy.hpp"

#include <algorithm>
#include <cstring>

namespace sockbroker::policy {

// Compares what bind(2) sees rather than the text. Every Address is built
// zeroed, so padding compares equal.
bool same_address(const Address& a, const Address& b) noexcept {
  return a.kind == b.kind && a.length == b.length && std::memcmp(&a.storage, &b.storage, a.length) == 0;
}

const char* to_string(AuditFailure mode) noexcept {
  return mode == AuditFailure::deny ? "deny" : "continue";
}

const SocketSpec* Policy::find(std::string_view name) const noexcept {
  auto it = std::lower_bound(sockets.begin(), sockets.end(), name,
                             [](const SocketSpec& spec, std::string_view key) { return spec.name < key; });
  if (it == sockets.end() || it->name != name) return nullptr;
  return &*it;
}

BindingChange binding_change(const SocketSpec& a, const SocketSpec& b) {
  BindingChange out;
  auto check = [](bool differs, const char* key, std::vector<std::string>& into) {
    if (differs) into.emplace_back(key);
  };
  check(!same_address(a.listen, b.listen), "listen", out.new_socket);
  check(a.type != b.type, "type", out.new_socket);
  check(a.reuse_port != b.reuse_port, "reuse_port", out.new_socket);
  check(a.bind_to_device != b.bind_to_device, "bind_to_device", out.new_socket);
  check(a.free_bind != b.free_bind, "free_bind", out.new_socket);
  check(a.transparent != b.transparent, "transparent", out.new_socket);
  check(a.v6only != b.v6only, "v6only", out.new_socket);
  check(a.allow_abstract != b.allow_abstract, "allow_abstract", out.new_socket);
  check(a.netns != b.netns, "netns", out.new_socket);
  // listen(2) again sets a listening socket's backlog; the buffer sizes,
  // TCP_FASTOPEN and a path's owner and mode can be set on a live socket too.
  check(a.backlog != b.backlog, "backlog", out.in_place);
  check(a.receive_buffer != b.receive_buffer, "receive_buffer", out.in_place);
  check(a.send_buffer != b.send_buffer, "send_buffer", out.in_place);
  check(a.fast_open != b.fast_open, "fast_open", out.in_place);
  check(a.socket_user != b.socket_user, "socket_user", out.in_place);
  check(a.socket_group != b.socket_group, "socket_group", out.in_place);
  check(a.socket_mode != b.socket_mode, "socket_mode", out.in_place);
  return out;
}

bool same_binding(const SocketSpec& a, const SocketSpec& b) noexcept {
  // Rules and max_grants are deliberately absent: changing who may acquire a
  // socket must not close the one services already hold.
  return same_address(a.listen, b.listen) && a.type == b.type && a.reuse_port == b.reuse_port &&
         a.backlog == b.backlog && a.bind_to_device == b.bind_to_device && a.free_bind == b.free_bind &&
         a.transparent == b.transparent && a.fast_open == b.fast_open && a.v6only == b.v6only &&
         a.receive_buffer == b.receive_buffer && a.send_buffer == b.send_buffer && a.socket_user == b.socket_user &&
         a.socket_group == b.socket_group && a.socket_mode == b.socket_mode && a.allow_abstract == b.allow_abstract &&
         a.netns == b.netns;
}

}  // namespace sockbroker::policy
