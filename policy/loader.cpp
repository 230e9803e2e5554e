// Reading policy files and checking what spans them: duplicate socket names,
// [broker] keys set twice, and sockets whose addresses cannot both be bound.
#include "loader.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sockbroker/fd.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <iterator>
#include <map>
#include <system_error>
#include <unordered_map>

#include "accounts.hpp"
#include "conflict.hpp"
#include "document.hpp"
#include "sort_records.hpp"
#include "unix_path_safety.hpp"

namespace sockbroker::policy {
namespace {

// A policy is a few kilobytes; anything near this is a mistake (a log file
// given as --policy), and toml++ builds the whole tree in memory.
constexpr std::size_t kMaxPolicyBytes = 4 << 20;

Error read_error(int err) {
  return errno_error("cannot read: " + std::error_code(err, std::generic_category()).message(), err);
}

Result<std::string> read_bounded(const std::string& path) {
  // O_NONBLOCK so that a FIFO given by mistake cannot hang a reload; it is
  // refused below as not a regular file.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd) return read_error(errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return read_error(errno);
  if (S_ISDIR(st.st_mode)) return read_error(EISDIR);
  if (!S_ISREG(st.st_mode)) return errno_error("cannot read: not a regular file", EINVAL);
  // st_size only sizes the first buffer: the file may change while it is
  // read, so the bound is enforced on the bytes actually read.
  std::string text(std::min<std::size_t>(static_cast<std::size_t>(st.st_size), kMaxPolicyBytes) + 1, '\0');
  std::size_t used = 0;
  for (;;) {
    if (used == text.size()) {
      if (text.size() > kMaxPolicyBytes) break;
      text.resize(std::min(text.size() * 2, kMaxPolicyBytes + 1));
    }
    ssize_t n = ::read(fd.get(), text.data() + used, text.size() - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return read_error(errno);
    if (n == 0) break;
    used += static_cast<std::size_t>(n);
  }
  if (used > kMaxPolicyBytes) {
    return errno_error("file is larger than " + std::to_string(kMaxPolicyBytes) + " bytes", EFBIG);
  }
  text.resize(used);
  return text;
}

// One read(2) with a buffer big enough for the whole value: the kernel's
// integer sysctl handlers return EOF to any read at a non-zero offset, so a
// value read in pieces comes back cut short.
std::optional<long> read_sysctl(const char* path) {
  UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) return std::nullopt;
  char buffer[64];
  ssize_t n = ::read(fd.get(), buffer, sizeof buffer - 1);
  if (n <= 0) return std::nullopt;
  buffer[n] = '\0';
  char* end = nullptr;
  errno = 0;
  long value = std::strtol(buffer, &end, 10);
  if (errno != 0 || end == buffer) return std::nullopt;
  return value;
}

// The settings of one [broker] key, copied from the document that set it.
void apply_broker_key(const std::string& key, const BrokerSettings& from, BrokerSettings& to) {
  if (key == "admin_group") to.admin_group = from.admin_group;
  if (key == "control_mode") to.control_mode = from.control_mode;
  if (key == "max_clients") to.max_clients = from.max_clients;
  if (key == "max_clients_per_uid") to.max_clients_per_uid = from.max_clients_per_uid;
  if (key == "request_timeout_ms") to.request_timeout_ms = from.request_timeout_ms;
  if (key == "max_grants_per_client") to.max_grants_per_client = from.max_grants_per_client;
  if (key == "audit_failure") to.audit_failure = from.audit_failure;
  if (key == "audit_rate_per_uid") to.audit_rate_per_uid = from.audit_rate_per_uid;
  if (key == "audit_burst_per_uid") to.audit_burst_per_uid = from.audit_burst_per_uid;
}

class Loader {
 public:
  explicit Loader(const LoadOptions& options) : reporter_(options.strict), check_file_system_(options.check_file_system) {
    limits_.rmem_max = read_sysctl("/proc/sys/net/core/rmem_max");
    limits_.wmem_max = read_sysctl("/proc/sys/net/core/wmem_max");
  }

  // A path (file or directory) the operator named.
  void add_path(const std::string& path) {
    std::error_code ec;
    auto status = std::filesystem::status(path, ec);
    if (!ec && std::filesystem::is_directory(status)) {
      add_directory(path, /*must_have_files=*/true);
    } else {
      add_file(path);
    }
  }

  void add_directory(const std::string& path, bool must_have_files) {
    std::vector<std::string> names;
    std::error_code ec;
    std::filesystem::directory_iterator it(path, ec);
    for (; !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
      std::string name = it->path().filename().string();
      // The shell's *.toml: hidden files (editor swap files, ".#x.toml") are
      // not policy.
      if (name.size() <= 5 || name.front() == '.' || !name.ends_with(".toml")) continue;
      std::error_code type_ec;
      if (it->is_directory(type_ec)) continue;
      names.push_back(std::move(name));
    }
    if (ec) {
      file_error(path, "cannot read directory: " + ec.message());
      return;
    }
    // Byte order, not locale order: "10-a.toml" before "9-b.toml" on every host.
    std::sort(names.begin(), names.end());
    if (names.empty() && must_have_files) {
      file_error(path, "directory has no *.toml files");
      return;
    }
    for (const std::string& name : names) add_file((std::filesystem::path(path) / name).string());
  }

  void add_file(const std::string& path) {
    auto text = read_bounded(path);
    if (!text) {
      file_error(path, text.error().message);
      return;
    }
    add_text(*text, path);
  }

  void add_text(std::string_view text, const std::string& file) {
    if (text.size() > kMaxPolicyBytes) {
      file_error(file, "file is larger than " + std::to_string(kMaxPolicyBytes) + " bytes");
      return;
    }
    order_.push_back(file);
    files_.push_back(file);
    toml::table root;
    try {
      root = toml::parse(text, std::string_view(file));
    } catch (const toml::parse_error& e) {
      const auto& begin = e.source().begin;
      reporter_.error(SourcePos{file, static_cast<int>(begin.line), static_cast<int>(begin.column)},
                      std::string(e.description()));
      return;
    }
    detail::ParsedDocument document = detail::read_document(root, file, limits_, reporter_);
    merge_broker(document);
    // One move of the whole range: pushing one at a time regrows the vector
    // while the document's copy and the TOML tree are still alive, which was
    // the peak of a large policy's memory.
    sockets_.insert(sockets_.end(), std::make_move_iterator(document.sockets.begin()),
                    std::make_move_iterator(document.sockets.end()));
  }

  LoadResult finish() {
    check_names_and_conflicts();
    LoadResult result;
    bool ok = !reporter_.has_errors();
    result.diagnostics = reporter_.take_sorted(order_);
    if (!ok) return result;
    Policy policy;
    policy.broker = broker_;
    policy.files = std::move(files_);
    policy.sockets.reserve(sockets_.size());
    for (auto& parsed : sockets_) policy.sockets.push_back(std::move(parsed.spec));
    detail::stable_sort_records(policy.sockets, [](const SocketSpec& a, const SocketSpec& b) { return a.name < b.name; });
    result.policy = std::move(policy);
    return result;
  }

 private:
  void file_error(const std::string& path, std::string message) {
    order_.push_back(path);
    reporter_.error(SourcePos{path, 0, 0}, std::move(message));
  }

  void merge_broker(const detail::ParsedDocument& document) {
    for (const auto& key : document.broker_keys) {
      auto [it, inserted] = broker_keys_.emplace(key.key, key.where);
      if (!inserted) {
        // Two drop-ins disagreeing silently by load order is how a limit ends
        // up different from what either author wrote.
        reporter_.error(key.where, key.key + " is already set at " + detail::to_string(it->second));
        continue;
      }
      apply_broker_key(key.key, document.broker, broker_);
    }
  }

  // Sockets are in load order, so "earlier" is the first file, first line.
  void check_names_and_conflicts() {
    std::unordered_map<std::string, std::size_t> by_name;
    std::unordered_map<std::string, std::vector<std::size_t>> by_key;
    for (std::size_t i = 0; i < sockets_.size(); ++i) {
      const detail::ParsedSocket& current = sockets_[i];
      auto [named, inserted] = by_name.emplace(current.spec.name, i);
      if (!inserted) {
        reporter_.error(current.spec.where, "socket " + detail::quoted(current.spec.name) + " is already defined at " +
                                                detail::to_string(sockets_[named->second].spec.where));
        continue;  // one message per mistake: its conflicts would repeat this one
      }
      if (!current.usable) continue;
      if (check_file_system_ && current.spec.listen.kind == Address::Kind::unix_path) check_directories(current);
      auto& group = by_key[detail::conflict_key(current.spec)];
      // Quadratic only among sockets sharing a port and transport (or a
      // path): a handful in any real policy.
      for (std::size_t j : group) {
        const detail::ParsedSocket& other = sockets_[j];
        if (!detail::bindings_conflict(other.spec, current.spec)) continue;
        std::string message = "listen " + detail::quoted(current.spec.listen.text) + " conflicts with socket " +
                              detail::quoted(other.spec.name) + " (" + detail::quoted(other.spec.listen.text) + " at " +
                              detail::to_string(other.listen_pos) + ")";
        if (!current.spec.listen.is_unix()) message += "; sockets can share a port only if both set reuse_port = true";
        reporter_.error(current.listen_pos, std::move(message));
        break;
      }
      group.push_back(i);
    }
  }

  void check_directories(const detail::ParsedSocket& socket) {
    PathVerdict verdict = check_socket_directories(socket.spec.listen.text);
    if (verdict.kind == PathVerdict::Kind::untrusted) reporter_.error(socket.listen_pos, std::move(verdict.message));
    if (verdict.kind == PathVerdict::Kind::unknown) reporter_.warning(socket.listen_pos, std::move(verdict.message));
  }

  detail::Reporter reporter_;
  bool check_file_system_ = true;
  detail::HostLimits limits_;
  std::vector<std::string> order_;  // every path a diagnostic may name, in load order
  std::vector<std::string> files_;  // the files actually read
  BrokerSettings broker_;
  std::map<std::string, SourcePos> broker_keys_;
  std::vector<detail::ParsedSocket> sockets_;
};

}  // namespace

LoadResult load_policy(const std::vector<std::string>& paths, const LoadOptions& options) {
  detail::AccountCache accounts;  // one lookup per account name per load
  Loader loader(options);
  if (paths.empty()) {
    loader.add_file(kDefaultPolicyFile);
    std::error_code ec;
    // The drop-in directory is optional, and may be empty.
    if (std::filesystem::is_directory(kDefaultPolicyDir, ec)) loader.add_directory(kDefaultPolicyDir, false);
  } else {
    for (const std::string& path : paths) loader.add_path(path);
  }
  return loader.finish();
}

LoadResult load_policy_text(std::string_view text, std::string_view file_name, const LoadOptions& options) {
  detail::AccountCache accounts;  // one lookup per account name per load
  Loader loader(options);
  loader.add_text(text, std::string(file_name));
  return loader.finish();
}

}  // namespace sockbroker::policy
