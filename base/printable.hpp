// Untrusted text made safe to print: bytes from a client or a policy file end
// up in logs, audit lines and terminals, and must not break lines or send
// terminal escapes.
#pragma once

#include <string>
#include <string_view>

namespace sockbroker {

// text with every control byte (< 0x20, 0x7f) written as \xNN.
[[nodiscard]] std::string printable(std::string_view text);

// User text for a message, as every message in the project names it: in
// double quotes, '"' and '\\' escaped, control bytes as \xNN (a newline in a
// value cannot forge a second line), cut with "..." past 200 bytes.
[[nodiscard]] std::string quoted(std::string_view text);

}  // namespace sockbroker
