// libFuzzer target for the policy loader: TOML text from an operator's editor,
// so anything a typo can produce. Beyond "does not crash": a policy comes back
// exactly when there is no error, every diagnostic is one printable line that
// names the file, and --strict never accepts what the default mode refuses.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "loader.hpp"

namespace {

using namespace sockbroker::policy;

constexpr std::string_view kFileName = "fuzz.toml";

[[noreturn]] void violated(const char* invariant, const std::string& detail = {}) {
  std::fprintf(stderr, "fuzz_policy_loader: invariant violated: %s%s%s\n", invariant, detail.empty() ? "" : ": ",
               detail.c_str());
  std::abort();
}

void check(const LoadResult& result) {
  if (result.policy.has_value() == has_errors(result.diagnostics)) {
    violated("a policy is returned exactly when there are no errors");
  }
  for (const Diagnostic& diagnostic : result.diagnostics) {
    std::string line = diagnostic.format();
    // `sockbroker check` prints one problem per line for editors and scripts;
    // a raw control byte from the file would break the line or the terminal.
    if (!line.starts_with(kFileName)) violated("diagnostics name the file", line);
    for (char c : line) {
      auto u = static_cast<unsigned char>(c);
      if (u < 0x20 || u == 0x7f) violated("diagnostics are one printable line", line);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  LoadResult normal = load_policy_text(text, kFileName, LoadOptions{.check_file_system = false});
  check(normal);
  LoadResult strict = load_policy_text(text, kFileName, LoadOptions{.strict = true, .check_file_system = false});
  check(strict);
  if (strict.policy && !normal.policy) violated("--strict accepts nothing the default mode refuses");
  if (strict.diagnostics.size() != normal.diagnostics.size()) {
    violated("--strict changes severities, not what is found");
  }
  return 0;
}
