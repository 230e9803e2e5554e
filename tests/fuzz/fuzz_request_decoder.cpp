// libFuzzer target for the broker's one door for untrusted bytes.
//
// Beyond "does not crash": every input must end either in a protocol error or
// in a request that is valid on its own and survives a round trip through the
// encoder; and the copying path for unaligned buffers must agree with the
// in-place one. A violation aborts, which libFuzzer reports as a crash.
#include <sockbroker/client.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "codec.hpp"

namespace {

using namespace sockbroker::proto;

[[noreturn]] void violated(const char* invariant, const std::string& detail = {}) {
  std::fprintf(stderr, "fuzz_request_decoder: invariant violated: %s%s%s\n", invariant,
               detail.empty() ? "" : ": ", detail.c_str());
  std::abort();
}

bool same(const Request& a, const Request& b) {
  if (a.index() != b.index()) return false;
  if (const auto* x = std::get_if<AcquireRequest>(&a)) {
    const auto& y = std::get<AcquireRequest>(b);
    return x->name == y.name && x->flags == y.flags && x->with_netns == y.with_netns;
  }
  if (const auto* x = std::get_if<ListRequest>(&a)) return x->cursor == std::get<ListRequest>(b).cursor;
  if (const auto* x = std::get_if<RevokeRequest>(&a)) return x->name == std::get<RevokeRequest>(b).name;
  return true;  // reload carries nothing
}

void check_outcome(const sockbroker::Result<Request>& result) {
  if (!result.ok()) {
    if (result.error().code != SOCKBROKER_E_PROTOCOL) violated("errors are SOCKBROKER_E_PROTOCOL");
    if (result.error().message.empty()) violated("errors say why");
    return;
  }
  if (const auto* acquire = std::get_if<AcquireRequest>(&*result)) {
    if (!sockbroker::valid_socket_name(acquire->name)) violated("decoded names are valid socket names", acquire->name);
  }
  DatagramBuffer buffer;
  auto size = encode_request(*result, buffer.span());
  if (!size.ok()) violated("a decoded request encodes again", size.error().message);
  auto again = decode_request(buffer.span().first(*size));
  if (!again.ok()) violated("a re-encoded request decodes", again.error().message);
  if (!same(*result, *again)) violated("a decoded request survives a round trip");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  auto result = decode_request(bytes);
  check_outcome(result);

  // libFuzzer's buffers are malloc'd, hence aligned: shift a copy by one byte
  // so every input also goes through the decoder's realigning copy.
  std::vector<std::byte> storage(size + 1);
  if (size > 0) std::memcpy(storage.data() + 1, data, size);
  auto shifted = decode_request(std::span<const std::byte>(storage).subspan(1));
  if (shifted.ok() != result.ok()) violated("alignment does not change the outcome");
  if (result.ok() ? !same(*result, *shifted) : shifted.error().message != result.error().message) {
    violated("alignment does not change the outcome");
  }
  return 0;
}
