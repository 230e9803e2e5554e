#include "audit.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <systemd/sd-journal.h>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <vector>

namespace sockbroker::broker {
namespace {

// "2026-11-22T10:00:00.123456Z": UTC with microseconds, as the contract shows.
std::string utc_timestamp() {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  tm parts{};
  ::gmtime_r(&now.tv_sec, &parts);
  char text[40];
  std::size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &parts);
  std::snprintf(text + n, sizeof text - n, ".%06ldZ", now.tv_nsec / 1000);
  return text;
}

// SOCKBROKER_PEER_UID=33 for {"peer":{"uid":33}}: journal field names are
// upper-case, flat, and [A-Z0-9_].
void flatten(const std::string& prefix, const nlohmann::ordered_json& value, std::vector<std::string>& out) {
  if (value.is_object()) {
    for (const auto& [key, child] : value.items()) {
      std::string name = prefix + "_" + key;
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) {
        return std::isalnum(c) ? static_cast<char>(std::toupper(c)) : '_';
      });
      flatten(name, child, out);
    }
    return;
  }
  out.push_back(prefix + "=" + (value.is_string() ? value.get<std::string>() : value.dump()));
}

void send_to_journal(std::string_view event, const nlohmann::ordered_json& fields, const std::string& line) {
  std::vector<std::string> entries;
  entries.push_back("MESSAGE=" + line);
  entries.push_back("SYSLOG_IDENTIFIER=sockbrokerd");
  entries.push_back(std::string("PRIORITY=") + (event == "deny" || event == "bad_request" ? "5" : "6"));
  flatten("SOCKBROKER", fields, entries);
  std::vector<iovec> iov;
  iov.reserve(entries.size());
  for (auto& entry : entries) iov.push_back(iovec{entry.data(), entry.size()});
  // Best effort by design: a journal hiccup must not stop the broker serving.
  (void)::sd_journal_sendv(iov.data(), static_cast<int>(iov.size()));
}

}  // namespace

Result<Audit> Audit::open(std::string_view destination) {
  try {
    std::shared_ptr<spdlog::logger> lines;
    if (destination == "journal") {
      return Audit(nullptr);
    } else if (destination.empty()) {
      lines = std::make_shared<spdlog::logger>("audit", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    } else if (destination == "-") {
      lines = std::make_shared<spdlog::logger>("audit", std::make_shared<spdlog::sinks::stdout_sink_mt>());
    } else {
      lines = std::make_shared<spdlog::logger>(
          "audit", std::make_shared<spdlog::sinks::basic_file_sink_mt>(std::string(destination), false));
    }
    lines->set_pattern("%v");
    lines->set_level(spdlog::level::info);
    lines->flush_on(spdlog::level::info);  // an audit line not on disk is not an audit line
    return Audit(std::move(lines));
  } catch (const spdlog::spdlog_ex& e) {
    return Error{0, 0, "cannot open audit destination \"" + std::string(destination) + "\": " + e.what()};
  }
}

void Audit::emit(std::string_view event, nlohmann::ordered_json fields) {
  nlohmann::ordered_json line;
  line["ts"] = utc_timestamp();
  line["event"] = event;
  line.update(fields);
  std::string text = line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  if (lines_) {
    lines_->info(text);
  } else {
    fields["event"] = event;
    send_to_journal(event, fields, text);
  }
}

nlohmann::ordered_json peer_json(const policy::PeerIdentity& peer) {
  nlohmann::ordered_json out{{"pid", peer.pid}, {"uid", peer.uid}, {"gid", peer.gid}};
  out["unit"] = peer.unit ? nlohmann::ordered_json(*peer.unit) : nlohmann::ordered_json(nullptr);
  out["exe"] = peer.executable ? nlohmann::ordered_json(*peer.executable) : nlohmann::ordered_json(nullptr);
  return out;
}

nlohmann::ordered_json local_addr_json(const policy::Address& address) {
  switch (address.kind) {
    case policy::Address::Kind::inet4: {
      const auto& in = reinterpret_cast<const sockaddr_in&>(address.storage);
      char text[INET_ADDRSTRLEN] = {};
      ::inet_ntop(AF_INET, &in.sin_addr, text, sizeof text);
      return {{"sa_family", "AF_INET"}, {"sin_addr", text}, {"sin_port", ntohs(in.sin_port)}};
    }
    case policy::Address::Kind::inet6: {
      const auto& in6 = reinterpret_cast<const sockaddr_in6&>(address.storage);
      char text[INET6_ADDRSTRLEN] = {};
      ::inet_ntop(AF_INET6, &in6.sin6_addr, text, sizeof text);
      return {{"sa_family", "AF_INET6"}, {"sin6_addr", text}, {"sin6_port", ntohs(in6.sin6_port)}};
    }
    case policy::Address::Kind::unix_path:
    case policy::Address::Kind::unix_abstract:
      return {{"sa_family", "AF_UNIX"}, {"sun_path", address.text}};
  }
  return nullptr;
}

nlohmann::ordered_json socket_json(const policy::SocketSpec& spec) {
  return {{"socket", spec.name},
          {"local_addr", local_addr_json(spec.listen)},
          {"type", proto::to_string(spec.type)},
          {"reuse_port", spec.reuse_port}};
}

}  // namespace sockbroker::broker
