#include "gateway/openai_request.h"

#include <algorithm>
#include <cmath>
#include <string_view>

namespace cellhouse::gateway {
namespace {

constexpr std::string_view kRoles[] = {"system", "developer", "user", "assistant", "tool"};

std::string WrongType(std::string_view param, std::string_view expected, const Json& got) {
  return "Invalid type for '" + std::string(param) + "': expected " + std::string(expected) +
         ", but got " + std::string(TypeName(got)) + ".";
}

// Reads the fields of one request object. Each getter returns the value (nullopt when absent or
// null) or records the first error, after which the caller stops.
class Fields {
 public:
  explicit Fields(const Json& object) : object_(object) {}

  const Json* Present(std::string_view key) const {
    const Json* v = Member(object_, key);
    return v == nullptr || v->is_null() ? nullptr : v;
  }

  std::optional<std::string> String(std::string_view key) {
    const Json* v = Present(key);
    if (v == nullptr) return std::nullopt;
    std::optional<std::string_view> s = AsString(*v);
    if (!s) return Fail(InvalidRequest(WrongType(key, "a string", *v), std::string(key)));
    return std::string(*s);
  }

  std::optional<bool> Bool(std::string_view key) {
    const Json* v = Present(key);
    if (v == nullptr) return std::nullopt;
    std::optional<bool> b = AsBool(*v);
    if (!b) return Fail(InvalidRequest(WrongType(key, "a boolean", *v), std::string(key)));
    return b;
  }

  std::optional<double> Number(std::string_view key, double min, double max) {
    const Json* v = Present(key);
    if (v == nullptr) return std::nullopt;
    std::optional<double> d = AsNumber(*v);
    if (!d) return Fail(InvalidRequest(WrongType(key, "a number", *v), std::string(key)));
    if (!(*d >= min && *d <= max)) {
      return Fail(InvalidRequest("Invalid '" + std::string(key) + "': " + Format(*d) +
                                     " is out of range; it must be between " + Format(min) +
                                     " and " + Format(max) + ".",
                                 std::string(key), "invalid_value"));
    }
    return d;
  }

  std::optional<int64_t> Integer(std::string_view key) {
    const Json* v = Present(key);
    if (v == nullptr) return std::nullopt;
    std::optional<int64_t> i = AsInteger(*v);
    if (!i) return Fail(InvalidRequest(WrongType(key, "an integer", *v), std::string(key)));
    return i;
  }

  // A field the API defines and this server refuses unless it has its neutral value.
  void RefuseUnless(std::string_view key, bool neutral, std::string_view what) {
    if (!failed() && Present(key) != nullptr && !neutral) Fail(Unsupported(key, what));
  }

  // Records the first error; returns nullopt for the getters' convenience.
  std::nullopt_t Fail(ApiError error) {
    if (!error_) error_ = std::move(error);
    return std::nullopt;
  }
  bool failed() const { return error_.has_value(); }
  std::optional<ApiError> TakeError() { return std::move(error_); }

  static std::string Format(double d) {
    if (std::floor(d) == d && std::fabs(d) < 1e15) return std::to_string(static_cast<int64_t>(d));
    return std::to_string(d);
  }

 private:
  const Json& object_;
  std::optional<ApiError> error_;
};

bool IsEmptyContainer(const Json* v) {
  return v == nullptr || ((v->is_array() || v->is_object()) && v->empty());
}

// max_tokens (and max_completion_tokens, which wins when both are given, as the API documents
// it as the replacement) against the tenant's limit.
void ReadMaxTokens(Fields& f, const TenantLimits& limits, uint32_t default_tokens, uint32_t* out,
                   bool* given) {
  std::optional<int64_t> legacy = f.Integer("max_tokens");
  std::optional<int64_t> current = f.Integer("max_completion_tokens");
  if (f.failed()) return;
  std::string param = current ? "max_completion_tokens" : "max_tokens";
  std::optional<int64_t> asked = current ? current : legacy;
  *given = asked.has_value();
  if (!asked) {
    *out = std::min(default_tokens, limits.max_tokens);
    return;
  }
  if (*asked < 1) {
    f.Fail(InvalidRequest(
        "Invalid '" + param + "': " + std::to_string(*asked) + " is below the minimum of 1.", param,
        "invalid_value"));
    return;
  }
  if (*asked > static_cast<int64_t>(limits.max_tokens)) {
    f.Fail(InvalidRequest("'" + param + "' is " + std::to_string(*asked) +
                              ", over this key's limit of " + std::to_string(limits.max_tokens) +
                              " new tokens per request.",
                          param, "invalid_value"));
    return;
  }
  if (limits.context_length != 0 && *asked > static_cast<int64_t>(limits.context_length)) {
    f.Fail(InvalidRequest("'" + param + "' is " + std::to_string(*asked) +
                              ", more than the model's context of " +
                              std::to_string(limits.context_length) + " tokens.",
                          param, "context_length_exceeded"));
    return;
  }
  *out = static_cast<uint32_t>(*asked);
}

void ReadStop(Fields& f, const TenantLimits& limits, std::vector<std::string>* out) {
  const Json* stop = f.Present("stop");
  if (stop == nullptr) return;
  std::vector<std::string_view> items;
  if (std::optional<std::string_view> one = AsString(*stop)) {
    items.push_back(*one);
  } else if (stop->is_array()) {
    for (const Json& item : *stop) {
      std::optional<std::string_view> s = AsString(item);
      if (!s) {
        f.Fail(InvalidRequest(WrongType("stop[]", "a string", item), "stop"));
        return;
      }
      items.push_back(*s);
    }
  } else {
    f.Fail(InvalidRequest(WrongType("stop", "a string or an array of strings", *stop), "stop"));
    return;
  }
  if (items.size() > limits.max_stop_strings) {
    f.Fail(InvalidRequest("'stop' has " + std::to_string(items.size()) + " sequences; at most " +
                              std::to_string(limits.max_stop_strings) + " are allowed.",
                          "stop", "invalid_value"));
    return;
  }
  for (std::string_view s : items) {
    if (s.empty() || s.size() > limits.max_stop_bytes) {
      f.Fail(InvalidRequest("Each 'stop' sequence must be 1 to " +
                                std::to_string(limits.max_stop_bytes) + " bytes long.",
                            "stop", "invalid_value"));
      return;
    }
    out->emplace_back(s);
  }
}

// The fields both routes share; `default_tokens` is the route's default max_tokens.
void ReadCommon(Fields& f, const TenantLimits& limits, uint32_t default_tokens,
                GenerationParams* p) {
  std::optional<std::string> model = f.String("model");
  if (f.failed()) return;
  if (!model || model->empty()) {
    f.Fail(InvalidRequest("You must provide a model parameter.", "model"));
    return;
  }
  p->model = std::move(*model);
  p->stream = f.Bool("stream").value_or(false);
  if (const Json* options = f.Present("stream_options"); options != nullptr && !f.failed()) {
    if (!options->is_object()) {
      f.Fail(InvalidRequest(WrongType("stream_options", "an object", *options), "stream_options"));
      return;
    }
    if (!p->stream) {
      f.Fail(
          InvalidRequest("The 'stream_options' parameter is only allowed when 'stream' is "
                         "enabled.",
                         "stream_options"));
      return;
    }
    Fields o(*options);
    p->include_usage = o.Bool("include_usage").value_or(false);
    if (o.failed()) {
      f.Fail(
          InvalidRequest("Invalid type for 'stream_options.include_usage': expected a "
                         "boolean.",
                         "stream_options.include_usage"));
      return;
    }
  }
  ReadMaxTokens(f, limits, default_tokens, &p->max_tokens, &p->max_tokens_given);
  p->sampling.temperature = f.Number("temperature", 0, 2);
  p->sampling.top_p = f.Number("top_p", 0, 1);
  p->sampling.frequency_penalty = f.Number("frequency_penalty", -2, 2).value_or(0);
  p->sampling.presence_penalty = f.Number("presence_penalty", -2, 2).value_or(0);
  if (std::optional<int64_t> seed = f.Integer("seed")) {
    // The API's seed is a signed 64-bit integer; the sampler's is its bit pattern.
    p->sampling.seed = static_cast<uint64_t>(*seed);
  }
  if (std::optional<int64_t> n = f.Integer("n"); n && *n != 1) {
    f.Fail(Unsupported("n", "More than one choice (n other than 1)"));
    return;
  }
  f.String("user");
  if (f.failed()) return;
  ReadStop(f, limits, &p->stop);
  f.RefuseUnless("logit_bias", IsEmptyContainer(f.Present("logit_bias")), "logit_bias");
}

// One message's content: a string, or an array of text parts (joined), or null for an
// assistant message.
bool ReadContent(Fields& f, const Json& message, size_t index, std::string* out) {
  std::string param = "messages[" + std::to_string(index) + "].content";
  const Json* content = Member(message, "content");
  if (content == nullptr || content->is_null()) return true;
  if (std::optional<std::string_view> s = AsString(*content)) {
    *out = std::string(*s);
    return true;
  }
  if (!content->is_array()) {
    f.Fail(
        InvalidRequest(WrongType(param, "a string or an array of content parts", *content), param));
    return false;
  }
  for (size_t i = 0; i < content->size(); ++i) {
    const Json& part = (*content)[i];
    std::string part_param = param + "[" + std::to_string(i) + "]";
    const Json* type = Member(part, "type");
    std::optional<std::string_view> type_name = type ? AsString(*type) : std::nullopt;
    if (!part.is_object() || !type_name) {
      f.Fail(InvalidRequest("Invalid '" + part_param + "': expected an object with a 'type'.",
                            part_param));
      return false;
    }
    if (*type_name != "text") {
      f.Fail(Unsupported(part_param + ".type",
                         "Content of type '" + std::string(type_name->substr(0, 40)) + "'"));
      return false;
    }
    const Json* text = Member(part, "text");
    std::optional<std::string_view> t = text ? AsString(*text) : std::nullopt;
    if (!t) {
      f.Fail(InvalidRequest("Invalid '" + part_param + ".text': expected a string.",
                            part_param + ".text"));
      return false;
    }
    out->append(*t);
  }
  return true;
}

void ReadMessages(Fields& f, const TenantLimits& limits, std::vector<ChatMessage>* out) {
  const Json* messages = f.Present("messages");
  if (messages == nullptr) {
    f.Fail(InvalidRequest("Missing required parameter: 'messages'.", "messages"));
    return;
  }
  if (!messages->is_array()) {
    f.Fail(InvalidRequest(WrongType("messages", "an array", *messages), "messages"));
    return;
  }
  if (messages->empty()) {
    f.Fail(InvalidRequest("'messages' must contain at least one message.", "messages"));
    return;
  }
  if (messages->size() > limits.max_messages) {
    f.Fail(InvalidRequest("'messages' has " + std::to_string(messages->size()) +
                              " messages; this key allows at most " +
                              std::to_string(limits.max_messages) + ".",
                          "messages", "invalid_value"));
    return;
  }
  size_t total = 0;
  for (size_t i = 0; i < messages->size(); ++i) {
    const Json& m = (*messages)[i];
    std::string param = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) {
      f.Fail(InvalidRequest(WrongType(param, "an object", m), param));
      return;
    }
    ChatMessage message;
    const Json* role = Member(m, "role");
    std::optional<std::string_view> role_name = role ? AsString(*role) : std::nullopt;
    bool known = false;
    for (std::string_view r : kRoles) known = known || (role_name && *role_name == r);
    if (!known) {
      f.Fail(InvalidRequest("Invalid '" + param +
                                ".role': expected one of system, developer, user, assistant, "
                                "tool.",
                            param + ".role"));
      return;
    }
    message.role = std::string(*role_name);
    const Json* content = Member(m, "content");
    if ((content == nullptr || content->is_null()) && message.role != "assistant") {
      f.Fail(InvalidRequest("Missing required parameter: '" + param + ".content'.",
                            param + ".content"));
      return;
    }
    if (!ReadContent(f, m, i, &message.content)) return;
    if (const Json* tool_calls = Member(m, "tool_calls");
        !IsEmptyContainer(tool_calls) && !tool_calls->is_null()) {
      f.Fail(Unsupported(param + ".tool_calls", "Tool calls"));
      return;
    }
    if (const Json* name = Member(m, "name"); name != nullptr && !name->is_null()) {
      std::optional<std::string_view> n = AsString(*name);
      if (!n) {
        f.Fail(InvalidRequest(WrongType(param + ".name", "a string", *name), param + ".name"));
        return;
      }
      message.name = std::string(*n);
    }
    total += message.content.size();
    out->push_back(std::move(message));
  }
  if (total > limits.max_prompt_bytes) {
    f.Fail(InvalidRequest("The messages hold " + std::to_string(total) +
                              " bytes of content; this key allows at most " +
                              std::to_string(limits.max_prompt_bytes) + ".",
                          "messages", "context_length_exceeded"));
  }
}

std::optional<ApiError> NotAnObject(const Json& body) {
  if (body.is_object()) return std::nullopt;
  return InvalidRequest("The request body must be a JSON object, not " +
                        std::string(TypeName(body)) + ".");
}

}  // namespace

std::optional<ApiError> ParseChatCompletionRequest(const Json& body, const TenantLimits& limits,
                                                   ChatCompletionRequest* out) {
  if (std::optional<ApiError> e = NotAnObject(body)) return e;
  Fields f(body);
  ReadCommon(f, limits, limits.max_tokens, &out->params);
  if (!f.failed()) ReadMessages(f, limits, &out->messages);
  if (!f.failed()) {
    std::optional<bool> logprobs = f.Bool("logprobs");
    if (logprobs.value_or(false)) f.Fail(Unsupported("logprobs", "logprobs"));
  }
  f.RefuseUnless("top_logprobs", false, "top_logprobs");
  f.RefuseUnless("tools", IsEmptyContainer(f.Present("tools")), "Tools");
  f.RefuseUnless("functions", IsEmptyContainer(f.Present("functions")), "Functions");
  f.RefuseUnless("function_call", false, "function_call");
  if (const Json* choice = f.Present("tool_choice"); choice != nullptr && !f.failed()) {
    std::optional<std::string_view> c = AsString(*choice);
    f.RefuseUnless("tool_choice", c && (*c == "none" || *c == "auto"), "tool_choice");
  }
  if (const Json* format = f.Present("response_format"); format != nullptr && !f.failed()) {
    const Json* type = Member(*format, "type");
    std::optional<std::string_view> t = type ? AsString(*type) : std::nullopt;
    f.RefuseUnless("response_format", t && *t == "text", "response_format other than text");
  }
  return f.TakeError();
}

std::optional<ApiError> ParseCompletionRequest(const Json& body, const TenantLimits& limits,
                                               CompletionRequest* out) {
  if (std::optional<ApiError> e = NotAnObject(body)) return e;
  Fields f(body);
  ReadCommon(f, limits, kCompletionsDefaultMaxTokens, &out->params);
  if (f.failed()) return f.TakeError();
  const Json* prompt = f.Present("prompt");
  if (prompt == nullptr) {
    return InvalidRequest("Missing required parameter: 'prompt'.", "prompt");
  }
  if (std::optional<std::string_view> s = AsString(*prompt)) {
    out->prompt = std::string(*s);
  } else if (prompt->is_array() && prompt->size() == 1 && AsString((*prompt)[0])) {
    out->prompt = std::string(*AsString((*prompt)[0]));
  } else if (prompt->is_array() && !prompt->empty() && AsString((*prompt)[0])) {
    return Unsupported("prompt", "More than one prompt per request");
  } else if (prompt->is_array()) {
    return Unsupported("prompt", "A prompt given as token ids");
  } else {
    return InvalidRequest(WrongType("prompt", "a string or an array of strings", *prompt),
                          "prompt");
  }
  if (out->prompt.size() > limits.max_prompt_bytes) {
    return InvalidRequest("The prompt is " + std::to_string(out->prompt.size()) +
                              " bytes; this key allows at most " +
                              std::to_string(limits.max_prompt_bytes) + ".",
                          "prompt", "context_length_exceeded");
  }
  std::optional<bool> echo = f.Bool("echo");
  if (echo.value_or(false)) f.Fail(Unsupported("echo", "echo"));
  std::optional<std::string> suffix = f.String("suffix");
  if (suffix && !suffix->empty()) f.Fail(Unsupported("suffix", "suffix"));
  std::optional<int64_t> best_of = f.Integer("best_of");
  if (best_of && *best_of != 1) f.Fail(Unsupported("best_of", "best_of other than 1"));
  f.RefuseUnless("logprobs", false, "logprobs");
  return f.TakeError();
}

}  // namespace cellhouse::gateway
