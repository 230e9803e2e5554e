// sockbroker's exit codes (sysexits(3), as CONTRACT.md lists them) and its one
// line of failure on stderr.
#pragma once

#include <sockbroker/fd.hpp>

#include <string_view>

namespace sockbroker::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 64;        // EX_USAGE
inline constexpr int kExitUnknown = 65;      // EX_DATAERR: no socket of that name
inline constexpr int kExitUnavailable = 69;  // EX_UNAVAILABLE: broker unreachable
inline constexpr int kExitBind = 71;         // EX_OSERR: the broker could not bind
inline constexpr int kExitProtocol = 76;     // EX_PROTOCOL
inline constexpr int kExitQuota = 75;        // EX_TEMPFAIL: limit reached, try later
inline constexpr int kExitDenied = 77;       // EX_NOPERM
inline constexpr int kExitConfig = 78;       // EX_CONFIG: invalid policy
inline constexpr int kExitCannotExecute = 126;
inline constexpr int kExitNotFound = 127;

// SOCKBROKER_E_* -> exit code.
[[nodiscard]] int exit_code_for(const Error& error) noexcept;

// Prints "sockbroker: <message>" on stderr and returns the exit code for
// error. With a socket the message does not name, the line says what was
// refused: "cannot <action> "<socket>": <message>".
int report(const Error& error, std::string_view socket = {}, std::string_view action = "acquire");

}  // namespace sockbroker::cli
