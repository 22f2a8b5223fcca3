#include "tests/gateway/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>

#include "base/clock.h"

namespace cellhouse::gateway::testing {
namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string Dechunk(const std::string& body) {
  std::string out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t eol = body.find("\r\n", pos);
    if (eol == std::string::npos) break;
    size_t size = std::strtoul(body.substr(pos, eol - pos).c_str(), nullptr, 16);
    pos = eol + 2;
    if (size == 0) break;
    out += body.substr(pos, size);
    pos += size + 2;
  }
  return out;
}

}  // namespace

UniqueFd ConnectTcp(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return {};
  // A test that waits for the server must not wait forever.
  timeval timeout{.tv_sec = 10, .tv_usec = 0};
  static_cast<void>(::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)));
  return fd;
}

HttpResponse ParseResponse(const std::string& raw) {
  HttpResponse r;
  r.raw = raw;
  size_t head_end = raw.find("\r\n\r\n");
  if (raw.compare(0, 5, "HTTP/") != 0 || head_end == std::string::npos) return r;
  size_t space = raw.find(' ');
  r.status = std::atoi(raw.c_str() + space + 1);
  size_t line = raw.find("\r\n") + 2;
  while (line < head_end) {
    size_t eol = raw.find("\r\n", line);
    std::string h = raw.substr(line, eol - line);
    size_t colon = h.find(':');
    if (colon != std::string::npos) {
      std::string value = h.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      r.headers[Lower(h.substr(0, colon))] = value;
    }
    line = eol + 2;
  }
  std::string body = raw.substr(head_end + 4);
  r.body = Lower(r.headers["transfer-encoding"]) == "chunked" ? Dechunk(body) : body;
  return r;
}

HttpResponse RawExchange(uint16_t port, const std::string& bytes, int timeout_ms) {
  UniqueFd fd = ConnectTcp(port);
  if (!fd.valid()) return {};
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = ::send(fd.get(), bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may answer and close before reading everything
    sent += static_cast<size_t>(n);
  }
  std::string raw;
  int64_t deadline = MonotonicNanos() + timeout_ms * kNanosPerMilli;
  for (;;) {
    int64_t left = (deadline - MonotonicNanos()) / kNanosPerMilli;
    if (left <= 0) break;
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) break;
    char buf[65536];
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n <= 0) break;
    raw.append(buf, static_cast<size_t>(n));
  }
  return ParseResponse(raw);
}

HttpResponse HttpRequestTo(uint16_t port, const std::string& method, const std::string& path,
                           const HeaderList& headers, const std::string& body, int timeout_ms) {
  std::string request = method + " " + path + " HTTP/1.1\r\n";
  bool host = false;
  for (const auto& [name, value] : headers) {
    host = host || Lower(name) == "host";
    request.append(name).append(": ").append(value).append("\r\n");
  }
  if (!host) request += "Host: 127.0.0.1\r\n";
  request += "Connection: close\r\n";
  if (!body.empty() || method == "POST") {
    request += "Content-Type: application/json\r\n";
    request += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  request += "\r\n" + body;
  return RawExchange(port, request, timeout_ms);
}

std::vector<std::string> SseData(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t eol = body.find('\n', pos);
    if (eol == std::string::npos) eol = body.size();
    std::string line = body.substr(pos, eol - pos);
    if (line.compare(0, 6, "data: ") == 0) out.push_back(line.substr(6));
    pos = eol + 1;
  }
  return out;
}

}  // namespace cellhouse::gateway::testing
