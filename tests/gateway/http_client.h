// A small blocking HTTP/1.1 client for the gateway's tests: one request per connection
// ("Connection: close"), the response read to the end, chunked bodies decoded, Server-Sent
// Events split into their data lines. Also raw byte exchanges for hostile-input tests.
//
//   HttpResponse r = HttpRequestTo(port, "POST", "/v1/completions", {{"Authorization", k}}, body);
//   EXPECT_EQ(r.status, 200);
//   std::vector<std::string> events = SseData(r.body);   // "data:" payloads, "[DONE]" last
#ifndef CELLHOUSE_TESTS_GATEWAY_HTTP_CLIENT_H_
#define CELLHOUSE_TESTS_GATEWAY_HTTP_CLIENT_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "base/unique_fd.h"

namespace cellhouse::gateway::testing {

struct HttpResponse {
  int status = 0;                              // 0: no response (connection closed or timed out)
  std::map<std::string, std::string> headers;  // lower-cased names
  std::string body;                            // de-chunked
  std::string raw;
};

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// "Host: 127.0.0.1" is added unless `headers` has a Host.
HttpResponse HttpRequestTo(uint16_t port, const std::string& method, const std::string& path,
                           const HeaderList& headers = {}, const std::string& body = "",
                           int timeout_ms = 30'000);
// Sends `bytes` as they are, then reads until the server closes or `timeout_ms` passes.
HttpResponse RawExchange(uint16_t port, const std::string& bytes, int timeout_ms = 10'000);
// Parses a raw response.
HttpResponse ParseResponse(const std::string& raw);
// The payloads of the "data:" lines of an SSE body, in order.
std::vector<std::string> SseData(const std::string& body);

// A connected socket to 127.0.0.1:port (blocking; reads time out after 10 s).
UniqueFd ConnectTcp(uint16_t port);

}  // namespace cellhouse::gateway::testing

#endif  // CELLHOUSE_TESTS_GATEWAY_HTTP_CLIENT_H_
