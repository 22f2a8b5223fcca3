// Errors as the OpenAI API returns them: an HTTP status and a body
// {"error": {"message", "type", "param", "code"}} (param and code null when not applicable).
// One constructor per situation, so every route words the same failure the same way.
//
//   ApiError e = InvalidRequest("temperature must be between 0 and 2", "temperature");
//   respond(e.status, DumpJson(ErrorBody(e)));          // 400
#ifndef CELLHOUSE_GATEWAY_API_ERROR_H_
#define CELLHOUSE_GATEWAY_API_ERROR_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "gateway/backend.h"
#include "gateway/json.h"

namespace cellhouse::gateway {

struct ApiError {
  int status = 400;
  std::string type = "invalid_request_error";
  std::string message;
  std::string param;  // "" → null
  std::string code;   // "" → null
  // With 429 and 503: the Retry-After header, in seconds (0: none).
  int retry_after_s = 0;
};

// 400: a parameter is missing, of the wrong type or out of range.
ApiError InvalidRequest(std::string message, std::string param = "", std::string code = "");
// 400: a parameter the API defines that this server does not implement.
ApiError Unsupported(std::string_view param, std::string_view what);
// 401: no key, or a key that is not valid.
ApiError MissingApiKey();
ApiError InvalidApiKey();
// 403: a Host or Origin header that is not one of the configured names.
ApiError ForbiddenOrigin(std::string_view header, std::string_view value);
// 404.
ApiError ModelNotFound(std::string_view model);
ApiError UnknownRoute(std::string_view method, std::string_view path);
// 405.
ApiError MethodNotAllowed(std::string_view method, std::string_view path);
// 413: the body is over the tenant's (or the gateway's) limit.
ApiError BodyTooLarge(size_t limit);
// 429: the tenant is at one of its limits; retry after `retry_after_s`.
ApiError RateLimited(std::string message, int retry_after_s);
// 503: no capacity now.
ApiError Unavailable(std::string message, int retry_after_s);
// 500.
ApiError Internal(std::string message);
// What a backend failure is for the client.
ApiError FromBackend(const BackendError& error);

// {"error": {...}}
Json ErrorBody(const ApiError& error);

}  // namespace cellhouse::gateway

#endif  // CELLHOUSE_GATEWAY_API_ERROR_H_
