#include "gateway/api_error.h"

#include <utility>

namespace cellhouse::gateway {

ApiError InvalidRequest(std::string message, std::string param, std::string code) {
  return ApiError{.status = 400,
                  .type = "invalid_request_error",
                  .message = std::move(message),
                  .param = std::move(param),
                  .code = std::move(code)};
}

ApiError Unsupported(std::string_view param, std::string_view what) {
  return InvalidRequest(std::string(what) + " is not supported by this server.", std::string(param),
                        "unsupported_parameter");
}

ApiError MissingApiKey() {
  return ApiError{.status = 401,
                  .type = "invalid_request_error",
                  .message =
                      "You didn't provide an API key. Provide it in an Authorization "
                      "header using Bearer auth (Authorization: Bearer YOUR_KEY); an "
                      "administrator makes keys with `cellgate key add`.",
                  .code = "missing_api_key"};
}

ApiError InvalidApiKey() {
  // The key itself is never echoed: it may be another service's secret pasted by mistake.
  return ApiError{.status = 401,
                  .type = "invalid_request_error",
                  .message = "Incorrect API key provided.",
                  .code = "invalid_api_key"};
}

ApiError ForbiddenOrigin(std::string_view header, std::string_view value) {
  std::string shown(value.substr(0, 100));
  return ApiError{.status = 403,
                  .type = "invalid_request_error",
                  .message = "The " + std::string(header) + " '" + shown +
                             "' is not one this gateway serves (see cellgate --allowed-host).",
                  .code = "forbidden_origin"};
}

ApiError ModelNotFound(std::string_view model) {
  std::string shown(model.substr(0, 200));
  return ApiError{
      .status = 404,
      .type = "invalid_request_error",
      .message = "The model `" + shown + "` does not exist or you do not have access to it.",
      .param = "model",
      .code = "model_not_found"};
}

ApiError UnknownRoute(std::string_view method, std::string_view path) {
  return ApiError{.status = 404,
                  .type = "invalid_request_error",
                  .message = "Unknown request URL: " + std::string(method) + " " +
                             std::string(path.substr(0, 200)) + ". Please check the URL for typos.",
                  .code = "unknown_url"};
}

ApiError MethodNotAllowed(std::string_view method, std::string_view path) {
  return ApiError{.status = 405,
                  .type = "invalid_request_error",
                  .message = "Method " + std::string(method) + " is not allowed on " +
                             std::string(path.substr(0, 200)) + ".",
                  .code = "method_not_allowed"};
}

ApiError BodyTooLarge(size_t limit) {
  return ApiError{.status = 413,
                  .type = "invalid_request_error",
                  .message = "The request body is larger than the limit of " +
                             std::to_string(limit) + " bytes.",
                  .code = "request_too_large"};
}

ApiError RateLimited(std::string message, int retry_after_s) {
  return ApiError{.status = 429,
                  .type = "requests",
                  .message = std::move(message),
                  .code = "rate_limit_exceeded",
                  .retry_after_s = retry_after_s};
}

ApiError Unavailable(std::string message, int retry_after_s) {
  return ApiError{.status = 503,
                  .type = "server_error",
                  .message = std::move(message),
                  .code = "service_unavailable",
                  .retry_after_s = retry_after_s};
}

ApiError Internal(std::string message) {
  return ApiError{.status = 500, .type = "server_error", .message = std::move(message)};
}

ApiError FromBackend(const BackendError& error) {
  switch (error.kind) {
    case BackendError::Kind::kInvalidRequest:
      return InvalidRequest(error.message);
    case BackendError::Kind::kContextFull:
      return InvalidRequest(error.message, "messages", "context_length_exceeded");
    case BackendError::Kind::kPermission:
      return ApiError{.status = 403,
                      .type = "permission_error",
                      .message = error.message,
                      .code = "permission_denied"};
    case BackendError::Kind::kTenantLimit:
      return RateLimited(error.message, 1);
    case BackendError::Kind::kNoCapacity:
    case BackendError::Kind::kUnavailable:
      return Unavailable(error.message, 1);
    case BackendError::Kind::kSessionEnded:
    case BackendError::Kind::kInternal:
      break;
  }
  return Internal(error.message);
}

Json ErrorBody(const ApiError& error) {
  Json inner = Json::object();
  inner["message"] = error.message;
  inner["type"] = error.type;
  inner["param"] = error.param.empty() ? Json(nullptr) : Json(error.param);
  inner["code"] = error.code.empty() ? Json(nullptr) : Json(error.code);
  Json body = Json::object();
  body["error"] = std::move(inner);
  return body;
}

}  // namespace cellhouse::gateway
