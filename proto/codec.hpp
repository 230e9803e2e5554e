// The one bounded codec both sides use: plain message values <-> datagram bytes.
//
// decode_request() is the broker's only door for untrusted bytes. It accepts at
// most kMaxDatagram bytes, reads them with Cap'n Proto ReaderOptions sized to
// that bound, rejects trailing bytes, wrong versions and unknown kinds, and is
// the only place that catches Cap'n Proto's exceptions.
#pragma once

#include <sockbroker/fd.hpp>

#include <cstddef>
#include <span>

#include "messages.hpp"

namespace sockbroker::proto {

// One control-socket datagram, either direction.
inline constexpr std::size_t kMaxDatagram = 4096;

// Cap'n Proto reads 8-byte words; receive into this so decoding never copies.
struct alignas(8) DatagramBuffer {
  std::byte bytes[kMaxDatagram];
  std::span<std::byte> span() noexcept { return bytes; }
};

[[nodiscard]] Result<Request> decode_request(std::span<const std::byte> datagram);
[[nodiscard]] Result<Reply> decode_reply(std::span<const std::byte> datagram);

// Encode into out (kMaxDatagram is always enough for a request or a single
// grant/failure; listings must be paged with listing_entry_bound). Returns the
// number of bytes written.
[[nodiscard]] Result<std::size_t> encode_request(const Request& request, std::span<std::byte> out);
[[nodiscard]] Result<std::size_t> encode_reply(const Reply& reply, std::span<std::byte> out);

// An upper bound of the bytes one entry adds to an encoded Listing, and of the
// fixed part of a Listing reply: a page whose bounds sum to at most
// kMaxDatagram always encodes.
[[nodiscard]] std::size_t listing_entry_bound(const SocketEntry& entry) noexcept;
inline constexpr std::size_t kListingOverheadBound = 128;

// A Failure reply's message is cut to this many bytes so that any failure fits.
inline constexpr std::size_t kMaxMessageLength = 1024;

// True if name may be a socket name: 1..kMaxNameLength of [A-Za-z0-9_.-] (no ":", which
// separates LISTEN_FDNAMES).
[[nodiscard]] bool valid_socket_name(std::string_view name) noexcept;

}  // namespace sockbroker::proto
