// Untrusted text made safe to print: bytes from a client or a policy file end
// up in logs, audit lines and terminals, and must not break lines or send
// terminal escapes.
#pragma once

#include <string>
#include <string_view>

namespace sockbroker::proto {

// text with every control byte (< 0x20, 0x7f) written as \xNN.
[[nodiscard]] std::string printable(std::string_view text);

}  // namespace sockbroker::proto
