// spdlog's logger, with fmt's formatting engine taken from libfmt.so.
//
// fmt 9 defines detail::vformat_to<char>, the engine behind every log call, in
// its header and instantiates it in libfmt.so, but declares no `extern
// template` for it. So every broker file that logs compiled its own copy, with
// the float and long-double formatters the broker never uses: 13 copies whose
// local clones the linker cannot merge, about a sixth of the daemon's code,
// and pages of them were mapped in at start-up beside the code that runs.
// Declaring the instantiation extern makes every file call libfmt.so's one.
// Not under FMT_HEADER_ONLY, where there is no libfmt.so to call.
#pragma once

#include <spdlog/logger.h>

#if !defined(FMT_HEADER_ONLY) && FMT_VERSION >= 90000 && FMT_VERSION < 100000
FMT_BEGIN_NAMESPACE
namespace detail {
extern template FMT_API void vformat_to(buffer<char>&, string_view, basic_format_args<FMT_BUFFER_CONTEXT(char)>,
                                        locale_ref);
}  // namespace detail
FMT_END_NAMESPACE
#endif
