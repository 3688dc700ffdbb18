#include "api/listen_address.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <cstring>

namespace cloister::api {
namespace {

Status Invalid(std::string_view text, std::string_view why) {
  return Status::InvalidArgument("listen address \"" + std::string(text) + "\": " +
                                 std::string(why));
}

// Host names and numeric addresses use letters, digits, '.', '-', '_' and (IPv6) ':'.
bool PlausibleHost(std::string_view host) {
  for (char c : host) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_' || c == ':' || c == '%';
    if (!ok) {
      return false;
    }
  }
  return !host.empty();
}

bool ParsePort(std::string_view text, uint16_t* port) {
  if (text.empty() || text.size() > 5) {
    return false;
  }
  uint32_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') {
      return false;
    }
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value > 65535) {
    return false;
  }
  *port = static_cast<uint16_t>(value);
  return true;
}

}  // namespace

std::string ListenAddress::ToString() const {
  if (host.find(':') != std::string::npos) {
    return "[" + host + "]:" + std::to_string(port);
  }
  return host + ":" + std::to_string(port);
}

Result<ListenAddress> ParseListenAddress(std::string_view text) {
  const char* kExpected = "expected host:port (e.g. \":8090\" or \"127.0.0.1:8090\")";
  ListenAddress address;
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return Invalid(text, "expected [ipv6]:port (e.g. \"[::1]:8090\")");
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    in6_addr unused;
    if (inet_pton(AF_INET6, std::string(host).c_str(), &unused) != 1) {
      return Invalid(text, "\"" + std::string(host) + "\" is not an IPv6 address");
    }
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return Invalid(text, kExpected);
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return Invalid(text, "an IPv6 address needs brackets (e.g. \"[::1]:8090\")");
    }
  }
  if (!ParsePort(port, &address.port)) {
    return Invalid(text, "the port must be a number from 0 to 65535");
  }
  if (host.empty()) {
    address.host = "0.0.0.0";
  } else if (!PlausibleHost(host)) {
    return Invalid(text, "\"" + std::string(host) + "\" is not a host name or address");
  } else {
    address.host = std::string(host);
  }
  return address;
}

Result<sockaddr_storage> ResolveListenAddress(const ListenAddress& address) {
  sockaddr_storage storage;
  std::memset(&storage, 0, sizeof(storage));
  std::string host = address.host == "localhost" ? "127.0.0.1" : address.host;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(address.port);
    return storage;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&storage);
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(address.port);
    return storage;
  }
  addrinfo hints;
  std::memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  int rc = getaddrinfo(host.c_str(), nullptr, &hints, &found);
  if (rc != 0 || found == nullptr) {
    return Status::NotFound("listen address " + address.ToString() + ": cannot resolve \"" +
                            host + "\": " + gai_strerror(rc));
  }
  // Prefer IPv4, as ParseListenAddress documents.
  const addrinfo* chosen = found;
  for (const addrinfo* entry = found; entry != nullptr; entry = entry->ai_next) {
    if (entry->ai_family == AF_INET) {
      chosen = entry;
      break;
    }
  }
  std::memcpy(&storage, chosen->ai_addr, chosen->ai_addrlen);
  freeaddrinfo(found);
  if (storage.ss_family == AF_INET) {
    v4->sin_port = htons(address.port);
  } else {
    v6->sin6_port = htons(address.port);
  }
  return storage;
}

std::string FormatSocketAddress(const sockaddr* address) {
  char text[INET6_ADDRSTRLEN] = {0};
  if (address->sa_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(address);
    inet_ntop(AF_INET, &v4->sin_addr, text, sizeof(text));
    return std::string(text) + ":" + std::to_string(ntohs(v4->sin_port));
  }
  if (address->sa_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(address);
    inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof(text));
    return "[" + std::string(text) + "]:" + std::to_string(ntohs(v6->sin6_port));
  }
  return "unknown";
}

}  // namespace cloister::api
