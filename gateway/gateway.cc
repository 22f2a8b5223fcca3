#include "gateway/gateway.h"

#include <algorithm>
#include <cctype>
#include <utility>

#include <spdlog/spdlog.h>

#include "base/strings.h"
#include "gateway/openai_request.h"
#include "gateway/openai_response.h"
#include "gateway/text_stream.h"

namespace cellhouse::gateway {
namespace {

constexpr std::string_view kJson = "application/json";
constexpr size_t kBodyWithoutKey = 0;  // requests before authentication carry no body

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// "Host: name:port" or "[::1]:port" → "name", "::1".
std::string HostName(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    size_t end = host.find(']');
    return Lower(host.substr(1, end == std::string_view::npos ? host.size() - 1 : end - 1));
  }
  size_t colon = host.find(':');
  return Lower(host.substr(0, colon));
}

// The route label for metrics: a fixed set, never the client's path.
std::string_view RouteLabel(std::string_view path) {
  if (path == "/v1/chat/completions") return "chat_completions";
  if (path == "/v1/completions") return "completions";
  if (path == "/v1/models" || StartsWith(path, "/v1/models/")) return "models";
  if (path == "/health") return "health";
  if (!StartsWith(path, "/v1/")) return "web";
  return "other";
}

Headers ApiHeaders() {
  return {{"Cache-Control", "no-store"}, {"X-Content-Type-Options", "nosniff"}};
}

double Seconds(int64_t ns) { return static_cast<double>(ns) / 1e9; }

}  // namespace

// ---- one generation request ----

class Gateway::Generation : public TurnObserver {
 public:
  Generation(Gateway& gateway, uint64_t id, std::shared_ptr<HttpExchange> exchange, Tenant tenant,
             Route route, GenerationParams params, TurnRequest turn,
             std::vector<ConversationCache::Digest> prefix, size_t max_idle_sessions)
      : gateway_(gateway),
        id_(id),
        exchange_(std::move(exchange)),
        tenant_(std::move(tenant)),
        route_(route),
        params_(std::move(params)),
        turn_(std::move(turn)),
        prefix_(std::move(prefix)),
        max_idle_sessions_(max_idle_sessions),
        text_(params_.stop),
        meta_(NewResponseMeta(route, params_.model)) {}

  ~Generation() override { Detach(); }

  void Start() {
    exchange_->OnClientGone([this] { ClientGone(); });
    if (route_ == Route::kChat) {
      std::optional<ConversationCache::Hit> hit =
          gateway_.cache_.Take(tenant_, params_.model, prefix_);
      gateway_.metrics_.sessions_reused.Inc({hit ? "yes" : "no"});
      if (hit) {
        session_ = std::move(hit->session);
        turn_.messages_held = hit->messages_held;
        Opened(std::nullopt);
        return;
      }
    }
    session_ = gateway_.backend_.CreateSession(tenant_, params_.model);
    session_->Open([this](std::optional<BackendError> failed) { Opened(std::move(failed)); });
  }

  void OnPiece(std::string_view bytes, TextChannel channel) override {
    if (finished_) return;
    int64_t now = gateway_.loop_.clock().NowNanos();
    if (last_piece_ns_ == 0) {
      gateway_.metrics_.time_to_first_token.Observe(Seconds(now - exchange_->started_ns()));
    } else {
      gateway_.metrics_.inter_token_latency.Observe(Seconds(now - last_piece_ns_));
    }
    last_piece_ns_ = now;
    if (channel == TextChannel::kReasoning) {
      std::string text;
      AppendValidUtf8(bytes, &reasoning_pending_, &text, /*final=*/false);
      Emit("", text);
      return;
    }
    if (text_.stopped()) return;
    Emit(text_.Push(bytes), "");
    if (text_.stopped()) {
      stop_matched_ = true;
      session_->Cancel();  // OnDone(kCancelled) follows; finish_reason "stop"
    }
  }

  void OnDone(const TurnDone& done) override {
    if (finished_) return;
    std::string reasoning_tail;
    AppendValidUtf8("", &reasoning_pending_, &reasoning_tail, /*final=*/true);
    Emit(text_.Finish(), reasoning_tail);
    FinishReason reason = FinishReason::kLength;
    if (stop_matched_ || done.reason == TurnDone::Reason::kEndOfText ||
        done.reason == TurnDone::Reason::kStopString) {
      reason = FinishReason::kStop;
    }
    Usage usage{.prompt_tokens = done.prompt_tokens,
                .completion_tokens = done.completion_tokens,
                .cached_tokens = done.cached_tokens};
    // A chat session can serve the conversation's next request: the worker reuses whatever
    // token prefix it shares with the new rendering, so even a reply cut short stays correct.
    // A cancelled one may still be unwinding; a context that is full has nothing left to give.
    bool keep = route_ == Route::kChat && !stop_matched_ &&
                done.reason != TurnDone::Reason::kCancelled &&
                done.reason != TurnDone::Reason::kContextFull;
    Complete(reason, usage);
    Retire(keep);
  }

  void OnFailed(const BackendError& error) override {
    if (finished_) return;
    Fail(FromBackend(error));
  }

 private:
  void Opened(std::optional<BackendError> failed) {
    if (finished_) return;
    if (failed) {
      Fail(FromBackend(*failed));
      return;
    }
    if (params_.stream) {
      Headers headers = ApiHeaders();
      headers.emplace_back("X-Accel-Buffering", "no");  // nginx: pass events on at once
      exchange_->StartStream(200, "text/event-stream; charset=utf-8", std::move(headers));
      gateway_.metrics_.requests.Inc({std::string(RouteLabel(exchange_->request().path)), "200"});
      ++gateway_.metrics_.active_streams;
      streaming_ = true;
      exchange_->OnDrained(gateway_.options_.stream_low_water, [this] {
        if (paused_ && session_ != nullptr) {
          paused_ = false;
          session_->SetPaused(false);
        }
      });
      if (route_ == Route::kChat) {
        exchange_->Write(SseEvent(
            ChatChunk(meta_, ChatDelta{.role = true}, std::nullopt, params_.include_usage)));
      }
    }
    session_->StartTurn(turn_, this);
  }

  void Emit(const std::string& content, const std::string& reasoning) {
    if (content.empty() && reasoning.empty()) return;
    if (!streaming_) {
      content_ += content;
      reasoning_ += reasoning;
      return;
    }
    if (route_ == Route::kChat) {
      ChatDelta delta{.content = content, .reasoning_content = reasoning};
      exchange_->Write(SseEvent(ChatChunk(meta_, delta, std::nullopt, params_.include_usage)));
    } else if (!content.empty()) {
      exchange_->Write(
          SseEvent(TextCompletionChunk(meta_, content, std::nullopt, params_.include_usage)));
    }
    content_ += content;  // kept for the conversation cache's digest
    if (!paused_ && exchange_->buffered() > gateway_.options_.stream_high_water) {
      paused_ = true;
      session_->SetPaused(true);
    }
  }

  void Complete(FinishReason reason, const Usage& usage) {
    finished_ = true;
    if (streaming_) {
      if (route_ == Route::kChat) {
        exchange_->Write(SseEvent(ChatChunk(meta_, ChatDelta{}, reason, params_.include_usage)));
        if (params_.include_usage) exchange_->Write(SseEvent(ChatUsageChunk(meta_, usage)));
      } else {
        exchange_->Write(SseEvent(TextCompletionChunk(meta_, "", reason, params_.include_usage)));
        if (params_.include_usage) {
          exchange_->Write(SseEvent(TextCompletionUsageChunk(meta_, usage)));
        }
      }
      exchange_->Write(kSseDone);
      exchange_->EndStream();
      return;
    }
    Json body = route_ == Route::kChat ? ChatCompletion(meta_, content_, reasoning_, reason, usage)
                                       : TextCompletion(meta_, content_, reason, usage);
    gateway_.AnswerJson(*exchange_, RouteLabel(exchange_->request().path), 200, body);
  }

  void Fail(const ApiError& error) {
    finished_ = true;
    if (streaming_) {
      // Mid-stream: an error event (the openai clients raise it), then the end of the stream.
      exchange_->Write(SseEvent(ErrorBody(error)));
      exchange_->EndStream();
    } else {
      gateway_.AnswerError(*exchange_, RouteLabel(exchange_->request().path), error);
    }
    Retire(/*keep_session=*/false);
  }

  void ClientGone() {
    if (finished_) return;
    finished_ = true;
    spdlog::debug("gateway: the client of {} left; cancelling its generation", meta_.id);
    gateway_.metrics_.requests.Inc({std::string(RouteLabel(exchange_->request().path)), "499"});
    Retire(/*keep_session=*/false);
  }

  void Retire(bool keep_session) {
    keep_session_ = keep_session;
    Detach();
    gateway_.Retire(id_);
  }

  // No callback from the exchange reaches this object any more.
  void Detach() {
    if (exchange_ == nullptr) return;
    exchange_->OnClientGone(nullptr);
    exchange_->OnDrained(0, nullptr);
    if (streaming_) {
      --gateway_.metrics_.active_streams;
      streaming_ = false;
    }
  }

 public:
  // Called by Gateway::Retire outside any callback: the session goes to the conversation cache
  // or is closed (cancelling what runs) with its handle.
  void Release() {
    if (session_ == nullptr) return;
    if (keep_session_ && session_->idle()) {
      if (paused_) session_->SetPaused(false);
      std::vector<ConversationCache::Digest> held = prefix_;
      ConversationCache::Digest digest = ConversationCache::Extend(
          held.back(), ChatMessage{.role = "assistant", .content = content_});
      gateway_.cache_.Put(tenant_, params_.model, std::move(session_), digest,
                          turn_.messages.size() + 1, max_idle_sessions_,
                          gateway_.loop_.clock().NowNanos());
    }
    session_.reset();
  }
  const Tenant& tenant() const { return tenant_; }

 private:
  Gateway& gateway_;
  uint64_t id_;
  std::shared_ptr<HttpExchange> exchange_;
  Tenant tenant_;
  Route route_;
  GenerationParams params_;
  TurnRequest turn_;
  std::vector<ConversationCache::Digest> prefix_;
  size_t max_idle_sessions_;
  TextStream text_;
  std::string reasoning_pending_;
  ResponseMeta meta_;
  std::unique_ptr<BackendSession> session_;
  std::string content_;
  std::string reasoning_;
  int64_t last_piece_ns_ = 0;
  bool streaming_ = false;
  bool paused_ = false;
  bool stop_matched_ = false;
  bool finished_ = false;
  bool keep_session_ = false;
};

// ---- Gateway ----

Gateway::Gateway(EventLoop& loop, SessionBackend& backend, KeyStore keys, WebAssets web,
                 GatewayOptions options)
    : loop_(loop),
      backend_(backend),
      keys_(std::move(keys)),
      web_(std::move(web)),
      options_(std::move(options)) {
  for (std::string& host : options_.allowed_hosts) host = HostName(host);
  ScheduleExpiry();
}

Gateway::~Gateway() {
  if (expiry_timer_ != 0) loop_.CancelTimer(expiry_timer_);
  if (retire_timer_ != 0) loop_.CancelTimer(retire_timer_);
  generations_.clear();
  cache_.Clear();
}

void Gateway::ScheduleExpiry() {
  int64_t period = std::max<int64_t>(options_.idle_session_ttl_ms / 4, 250) * kNanosPerMilli;
  expiry_timer_ = loop_.AddTimer(loop_.clock().NowNanos() + period, [this] {
    expiry_timer_ = 0;
    cache_.Expire(loop_.clock().NowNanos(), options_.idle_session_ttl_ms * kNanosPerMilli);
    metrics_.idle_sessions = static_cast<int64_t>(cache_.size());
    ScheduleExpiry();
  });
}

std::optional<ApiError> Gateway::CheckHostAndOrigin(const HttpRequest& request) const {
  auto allowed = [&](const std::string& name) {
    return std::find(options_.allowed_hosts.begin(), options_.allowed_hosts.end(), name) !=
           options_.allowed_hosts.end();
  };
  const std::string& host = request.Header("host");
  if (!host.empty() && !allowed(HostName(host))) return ForbiddenOrigin("Host", host);
  const std::string& origin = request.Header("origin");
  if (!origin.empty()) {
    std::string_view rest = origin;
    size_t scheme = rest.find("://");
    if (scheme == std::string_view::npos || !allowed(HostName(rest.substr(scheme + 3)))) {
      return ForbiddenOrigin("Origin", origin);
    }
  }
  return std::nullopt;
}

std::optional<Tenant> Gateway::Authenticate(const HttpRequest& request, ApiError* error) const {
  std::string_view value = request.Header("authorization");
  if (value.empty()) {
    *error = MissingApiKey();
    return std::nullopt;
  }
  constexpr std::string_view kBearer = "bearer ";
  if (value.size() <= kBearer.size() || Lower(value.substr(0, kBearer.size())) != kBearer) {
    *error = MissingApiKey();
    return std::nullopt;
  }
  std::string_view key = Trim(value.substr(kBearer.size()));
  std::optional<std::string> tenant = keys_.Authenticate(key);
  if (!tenant) {
    *error = InvalidApiKey();
    return std::nullopt;
  }
  return Tenant{*tenant};
}

void Gateway::Answer(HttpExchange& exchange, std::string_view route, HttpAnswer answer) {
  metrics_.requests.Inc({std::string(route), std::to_string(answer.status)});
  exchange.Respond(std::move(answer));
}

void Gateway::AnswerJson(HttpExchange& exchange, std::string_view route, int status,
                         const Json& body) {
  Answer(exchange, route,
         HttpAnswer{status, std::string(kJson), DumpJson(body) + "\n", ApiHeaders()});
}

void Gateway::AnswerError(HttpExchange& exchange, std::string_view route, const ApiError& error) {
  HttpAnswer answer{error.status, std::string(kJson), DumpJson(ErrorBody(error)) + "\n",
                    ApiHeaders()};
  if (error.retry_after_s > 0) {
    answer.headers.emplace_back("Retry-After", std::to_string(error.retry_after_s));
  }
  if (error.status == 401) answer.headers.emplace_back("WWW-Authenticate", "Bearer");
  Answer(exchange, route, std::move(answer));
}

HttpAnswer Gateway::BodyTooLarge(const HttpRequest& request, size_t limit) {
  ApiError error = gateway::BodyTooLarge(limit);
  metrics_.requests.Inc({std::string(RouteLabel(request.path)), "413"});
  return HttpAnswer{413, std::string(kJson), DumpJson(ErrorBody(error)) + "\n", ApiHeaders()};
}

std::optional<HttpAnswer> Gateway::OnHeaders(const HttpRequest& request, size_t* max_body) {
  auto refuse = [&](const ApiError& e) {
    metrics_.requests.Inc({std::string(RouteLabel(request.path)), std::to_string(e.status)});
    HttpAnswer a{e.status, std::string(kJson), DumpJson(ErrorBody(e)) + "\n", ApiHeaders()};
    if (e.status == 401) a.headers.emplace_back("WWW-Authenticate", "Bearer");
    return a;
  };
  if (std::optional<ApiError> e = CheckHostAndOrigin(request)) return refuse(*e);
  if (!StartsWith(request.path, "/v1/")) {
    *max_body = kBodyWithoutKey;
    return std::nullopt;
  }
  // The key is checked before the body is read: without one, not a byte of it is taken.
  ApiError error;
  std::optional<Tenant> tenant = Authenticate(request, &error);
  if (!tenant) return refuse(error);
  *max_body = backend_.Limits(*tenant).max_body_bytes;
  return std::nullopt;
}

void Gateway::OnRequest(const std::shared_ptr<HttpExchange>& exchange) {
  const HttpRequest& request = exchange->request();
  std::string_view route = RouteLabel(request.path);
  bool get = request.method == "GET" || request.method == "HEAD";
  if (request.path == "/health") {
    if (!get) return AnswerError(*exchange, route, MethodNotAllowed(request.method, request.path));
    return AnswerJson(*exchange, route, 200, Json{{"status", "ok"}});
  }
  if (!StartsWith(request.path, "/v1/")) {
    const WebAsset* asset = web_.Find(request.path);
    if (asset == nullptr) {
      return AnswerError(*exchange, route, UnknownRoute(request.method, request.path));
    }
    if (!get) return AnswerError(*exchange, route, MethodNotAllowed(request.method, request.path));
    Headers headers = {
        {"Content-Security-Policy",
         "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
         "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"},
        {"X-Content-Type-Options", "nosniff"},
        {"X-Frame-Options", "DENY"},
        {"Referrer-Policy", "no-referrer"},
        {"Cache-Control", "no-cache"}};
    return Answer(*exchange, route, HttpAnswer{200, asset->content_type, asset->body, headers});
  }
  ApiError error;
  std::optional<Tenant> tenant = Authenticate(request, &error);
  if (!tenant) return AnswerError(*exchange, route, error);
  if (request.path == "/v1/models" || StartsWith(request.path, "/v1/models/")) {
    if (!get) return AnswerError(*exchange, route, MethodNotAllowed(request.method, request.path));
    return ServeModels(*exchange, *tenant);
  }
  bool chat = request.path == "/v1/chat/completions";
  if (chat || request.path == "/v1/completions") {
    if (request.method != "POST") {
      return AnswerError(*exchange, route, MethodNotAllowed(request.method, request.path));
    }
    return ServeGeneration(exchange, *tenant, chat);
  }
  AnswerError(*exchange, route, UnknownRoute(request.method, request.path));
}

void Gateway::ServeModels(HttpExchange& exchange, const Tenant& tenant) {
  std::vector<ModelInfo> models = backend_.Models(tenant);
  const std::string& path = exchange.request().path;
  if (path == "/v1/models") return AnswerJson(exchange, "models", 200, ModelList(models));
  std::string_view id = std::string_view(path).substr(std::string_view("/v1/models/").size());
  for (const ModelInfo& m : models) {
    if (m.id == id) return AnswerJson(exchange, "models", 200, ModelObject(m));
  }
  AnswerError(exchange, "models", ModelNotFound(id));
}

void Gateway::ServeGeneration(const std::shared_ptr<HttpExchange>& exchange, const Tenant& tenant,
                              bool chat) {
  std::string_view route = chat ? "chat_completions" : "completions";
  // The body is read as JSON whatever its Content-Type says (curl -d sends a form type): a
  // body that is not JSON is refused by the parser.
  const HttpRequest& request = exchange->request();
  TenantLimits limits = backend_.Limits(tenant);
  Result<Json> body = ParseJson(request.body);
  if (!body) {
    return AnswerError(*exchange, route,
                       InvalidRequest("We could not parse the JSON body of your request: " +
                                      body.error().message()));
  }
  GenerationParams params;
  TurnRequest turn;
  if (chat) {
    ChatCompletionRequest parsed;
    if (std::optional<ApiError> e = ParseChatCompletionRequest(*body, limits, &parsed)) {
      return AnswerError(*exchange, route, *e);
    }
    params = std::move(parsed.params);
    turn.kind = TurnRequest::Kind::kChat;
    turn.messages = std::move(parsed.messages);
  } else {
    CompletionRequest parsed;
    if (std::optional<ApiError> e = ParseCompletionRequest(*body, limits, &parsed)) {
      return AnswerError(*exchange, route, *e);
    }
    params = std::move(parsed.params);
    turn.kind = TurnRequest::Kind::kCompletion;
    turn.prompt = std::move(parsed.prompt);
  }
  std::vector<ModelInfo> models = backend_.Models(tenant);
  if (std::none_of(models.begin(), models.end(),
                   [&](const ModelInfo& m) { return m.id == params.model; })) {
    return AnswerError(*exchange, route, ModelNotFound(params.model));
  }
  turn.max_tokens = params.max_tokens;
  turn.max_tokens_is_default = !params.max_tokens_given;
  turn.sampling = params.sampling;
  turn.stop = params.stop;
  if (std::optional<BackendError> e = backend_.Check(turn)) {
    return AnswerError(*exchange, route, FromBackend(*e));
  }
  size_t& active = active_by_tenant_[tenant.name];
  if (active >= limits.max_concurrent_requests) {
    return AnswerError(*exchange, route,
                       RateLimited("This key already has " + std::to_string(active) +
                                       " requests in progress, its limit; retry when one ends.",
                                   1));
  }
  ++active;
  ++metrics_.active_requests;
  std::vector<ConversationCache::Digest> prefix;
  if (chat) prefix = ConversationCache::PrefixDigests(turn.messages);
  uint64_t id = next_generation_++;
  auto generation = std::make_unique<Generation>(
      *this, id, exchange, tenant, chat ? Route::kChat : Route::kCompletion, std::move(params),
      std::move(turn), std::move(prefix), limits.max_idle_sessions);
  Generation* raw = generation.get();
  generations_.emplace(id, std::move(generation));
  raw->Start();
}

void Gateway::Retire(uint64_t id) {
  retiring_.push_back(id);
  if (retire_timer_ != 0) return;
  retire_timer_ = loop_.AddTimer(loop_.clock().NowNanos(), [this] {
    retire_timer_ = 0;
    std::vector<uint64_t> ids = std::move(retiring_);
    retiring_.clear();
    for (uint64_t retired : ids) {
      auto it = generations_.find(retired);
      if (it == generations_.end()) continue;
      std::unique_ptr<Generation> generation = std::move(it->second);
      generations_.erase(it);
      auto active = active_by_tenant_.find(generation->tenant().name);
      if (active != active_by_tenant_.end() && --active->second == 0) {
        active_by_tenant_.erase(active);
      }
      --metrics_.active_requests;
      generation->Release();
    }
    metrics_.idle_sessions = static_cast<int64_t>(cache_.size());
  });
}

}  // namespace cellhouse::gateway
