// The one bounded codec both sides use: plain message values <-> datagram bytes.
//
// decode_request() is the broker's only door for untrusted bytes. It accepts at
// most kMaxDatagram bytes, reads them with Cap'n Proto ReaderOptions sized to
// that bound, rejects trailing bytes, wrong versions and unknown kinds, and is
// the only place that catches Cap'n Proto's exceptions.
#pragma once

#include <sockbroker/fd.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "messages.hpp"

namespace sockbroker::proto {

// One control-socket datagram, either direction.
inline constexpr std::size_t kMaxDatagram = 4096;
// The same in Cap'n Proto's 8-byte words.
inline constexpr std::size_t kWordsPerDatagram = kMaxDatagram / 8;

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

// Names an Outcome lists as failed; more are counted in its message.
inline constexpr std::size_t kMaxOutcomeFailed = 16;

// sun_path's size: the most bytes a Unix address of an AcquireAddress carries.
inline constexpr std::size_t kMaxUnixAddressBytes = 108;

// A Failure reply's message is cut to this many bytes so that any failure fits.
inline constexpr std::size_t kMaxMessageLength = 1024;

// Socket inodes one listing entry carries; the encoder sends the first this many.
inline constexpr std::size_t kMaxInodesPerEntry = 64;
// Holding processes named per listing entry (`list --holders`); the unit name
// of each is cut to kMaxNameLength.
inline constexpr std::size_t kMaxHolderRowsPerEntry = 8;

// A Status reply's bounded parts. With these, the largest Status encodes in
// about 3.5 KiB: any Status fits one datagram. The encoder cuts (paths and
// texts), or folds (reasons past the limit into "other"); the decoder refuses
// more than these, as from a broker that is not ours.
inline constexpr std::size_t kMaxStatusPaths = 8;
inline constexpr std::size_t kMaxStatusPathLength = 256;
inline constexpr std::size_t kMaxStatusReasons = 16;
inline constexpr std::size_t kMaxReasonLength = 32;
inline constexpr std::size_t kMaxStatusTextLength = 256;  // version, last reload message
inline constexpr std::size_t kMaxStatusAuditErrorLength = 64;  // a strerror() text
inline constexpr std::size_t kMaxStatusWordLength = 16;        // audit failure mode

}  // namespace sockbroker::proto
