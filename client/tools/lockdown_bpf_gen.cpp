// Build step: compiles the lockdown's seccomp table (lib/lockdown_filter.cpp)
// to BPF with libseccomp, once, and prints it as a C++ header that
// lib/lockdown.cpp embeds. libseccomp building the same filter at run time
// (its rule database, then code generation) cost every `sockbroker run` many
// times what loading a ready program does (docs/PERFORMANCE.md, "Where
// `sockbroker run`'s time goes").
//
// The program is for the architecture of the build (libseccomp's native one),
// as the filter built at run time was.
//
// Usage: lockdown_bpf_gen OUTPUT.inc
#include <linux/filter.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "lockdown_filter.hpp"

namespace {

namespace lf = sockbroker::lockdown_filter;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "lockdown_bpf_gen: %s\n", what.c_str());
  std::exit(1);
}

std::vector<sock_filter> compile(lf::Variant variant, bool allow_listen) {
  auto filter = lf::build_filter(variant, allow_listen);
  if (!filter) die(filter.error().message);
  // seccomp_export_bpf writes to a descriptor.
  sockbroker::UniqueFd memory(::memfd_create("lockdown-bpf", MFD_CLOEXEC));
  if (!memory) die("memfd_create failed");
  if (int rc = seccomp_export_bpf(filter->get(), memory.get()); rc != 0) die(lf::seccomp_error("seccomp_export_bpf", rc).message);
  std::vector<sock_filter> program;
  sock_filter instruction{};
  for (off_t offset = 0;; offset += sizeof instruction) {
    ssize_t n = ::pread(memory.get(), &instruction, sizeof instruction, offset);
    if (n == 0) break;
    if (n != static_cast<ssize_t>(sizeof instruction)) die("short read of the exported program");
    program.push_back(instruction);
  }
  if (program.empty() || program.size() > BPF_MAXINSNS) die("exported program has " + std::to_string(program.size()) + " instructions");
  return program;
}

void print(std::ofstream& out, const char* name, const std::vector<sock_filter>& program) {
  out << "inline constexpr sock_filter " << name << "[] = {\n";
  for (const sock_filter& i : program) {
    char line[80];
    std::snprintf(line, sizeof line, "    {0x%04x, %u, %u, 0x%08x},\n", i.code, i.jt, i.jf, i.k);
    out << line;
  }
  out << "};\n\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) die("usage: lockdown_bpf_gen OUTPUT.inc");
  const auto strict = compile(lf::Variant::unsupervised, false);
  const auto allow_listen = compile(lf::Variant::unsupervised, true);
  const auto supervised = compile(lf::Variant::supervised, false);
  const auto supervisor = compile(lf::Variant::supervisor, false);
  const scmp_version* v = seccomp_version();
  std::ofstream out(argv[1], std::ios::trunc);
  out << "// Generated at build time by client/tools/lockdown_bpf_gen.cpp from the table in\n"
      << "// client/lib/lockdown_filter.cpp, with libseccomp " << v->major << '.' << v->minor << '.' << v->micro
      << ". Do not edit.\n\n";
  print(out, "kLockdownProgram", strict);
  print(out, "kLockdownAllowListenProgram", allow_listen);
  print(out, "kSupervisedProgram", supervised);
  print(out, "kSupervisorProgram", supervisor);
  out.close();
  if (!out) die(std::string("cannot write ") + argv[1]);
  return 0;
}
