// The privileged answers: one decoded request and a verified identity in, one
// reply (and maybe a descriptor) out, one audit event per decision. The only
// place the broker decides anything; dispatch is one switch over request kinds.
#pragma once

#include <spdlog/logger.h>

#include <memory>

#include <sockbroker/fd.hpp>

#include "audit.hpp"
#include "identity.hpp"
#include "messages.hpp"
#include "policy.hpp"
#include "socket_table.hpp"

namespace sockbroker::broker {

struct Response {
  proto::Reply reply;
  std::shared_ptr<const UniqueFd> fd;  // attached to the reply; kept alive until sent
};

// Everything a decision reads or counts. Owned by main(), swapped whole on reload.
struct BrokerState {
  policy::Policy policy;
  SocketTable table;
};

class RequestHandler {
 public:
  RequestHandler(BrokerState& state, Audit& audit, spdlog::logger& log) : state_(state), audit_(audit), log_(log) {}

  [[nodiscard]] Response handle(const proto::Request& request, const policy::PeerIdentity& peer);

  // A datagram that did not decode (or a limit the connection hit): audited as
  // bad_request, answered with a protocol failure.
  [[nodiscard]] Response bad_request(const Error& error, const policy::PeerIdentity& peer);

  // A connection refused for a broker limit (max_clients, max_clients_per_uid).
  [[nodiscard]] Response limit_reached(std::string_view what, const policy::PeerIdentity& peer);

 private:
  Response acquire(const proto::AcquireRequest& request, const policy::PeerIdentity& peer);
  Response list(const proto::ListRequest& request, const policy::PeerIdentity& peer);
  Response deny(proto::ErrorCode code, std::string_view reason, std::string message, const std::string& socket,
                const policy::PeerIdentity& peer, nlohmann::ordered_json extra = nlohmann::ordered_json::object());

  BrokerState& state_;
  Audit& audit_;
  spdlog::logger& log_;
};

// "uid 65534 (nobody), gid 65534 (nogroup), unit none": how denials describe the caller.
[[nodiscard]] std::string describe_peer(const policy::PeerIdentity& peer);

}  // namespace sockbroker::broker
