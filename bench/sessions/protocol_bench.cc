// protocol_bench: the round trip of the smallest useful request through a live session, against
// the engine doing the same work in-process and against a bare Unix socket round trip.
//
//   build/bin/protocol_bench [--quick] [--samples 2000] [--json FILE] [--keep]
//
// The request is a Generate with max_new_tokens 1 on the `tiny` model (a 2-layer, 64-wide
// transformer: its forward pass takes microseconds), so what is timed is the protocol: the
// client encodes and sends a frame, the sandboxed worker (seccomp on every call) parses it, runs
// the turn and sends a Piece and a Done, the client reads both. Paths, interleaved in blocks:
//   socketpair   8 bytes there and back between two threads of this process (the kernel floor)
//   engine       the same turn on an engine::Conversation in this process (no IPC at all)
//   session      the turn through a session of a celld with the default policy's sandbox and
//                cgroups
//   no-quota     the same with a policy without cpu_percent (no CFS bandwidth limit)
//   no-cgroups   the sandbox alone: celld --no-cgroups
//   bare         neither: celld --insecure-no-sandbox --no-cgroups
// A session (and the engine's conversation) is replaced every --turns-per-session turns (the
// tiny model's context is 256); the first turn on a fresh one is reported apart, as "first".
// Figures only: nothing here asserts anything about time.
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/flags.h"
#include "base/print.h"
#include "base/unique_fd.h"
#include "bench/sessions/bench_common.h"
#include "cli/cellctl/json.h"
#include "cli/cellctl/session_client.h"
#include "engine/conversation.h"
#include "engine/model.h"
#include "engine/tokenizer/tokenizer.h"

namespace cellhouse::bench {
namespace {

struct Options {
  BenchFlags common;
  int64_t samples = 2000;
  int64_t block = 50;
  int64_t turns_per_session = 50;
  std::string prompt = "a";
};

// Echoes 8-byte messages until the peer closes.
class Echo {
 public:
  static Result<std::unique_ptr<Echo>> Start() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
      return Error::FromErrno(errno, "socketpair");
    }
    auto echo = std::unique_ptr<Echo>(new Echo(UniqueFd(fds[0]), UniqueFd(fds[1])));
    echo->thread_ = std::thread([e = echo.get()] {
      uint64_t word = 0;
      while (::read(e->far_.get(), &word, sizeof(word)) == sizeof(word)) {
        if (::write(e->far_.get(), &word, sizeof(word)) != sizeof(word)) break;
      }
    });
    return echo;
  }
  Echo(const Echo&) = delete;
  Echo& operator=(const Echo&) = delete;
  ~Echo() {
    ::shutdown(near_.get(), SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
  }
  Result<double> RoundTripMs() {
    uint64_t word = 42;
    const int64_t start = MonotonicNanos();
    if (::write(near_.get(), &word, sizeof(word)) != sizeof(word) ||
        ::read(near_.get(), &word, sizeof(word)) != sizeof(word)) {
      return Error::FromErrno(errno, "socketpair round trip");
    }
    return static_cast<double>(MonotonicNanos() - start) / 1e6;
  }

 private:
  Echo(UniqueFd near, UniqueFd far) : near_(std::move(near)), far_(std::move(far)) {}
  UniqueFd near_, far_;
  std::thread thread_;
};

// Turns on one session, replaced every `turns_per_session`.
class SessionPath {
 public:
  SessionPath(const Celld* celld, const Options& o) : celld_(celld), o_(o) {}
  Result<double> TurnMs() {
    if (!session_ || turns_ >= o_.turns_per_session) {
      if (session_) CH_RETURN_IF_ERROR(session_->Close());
      CH_ASSIGN_OR_RETURN(cli::SessionClient s,
                          cli::SessionClient::Open(celld_->socket(), {.policy = "default"}));
      session_.emplace(std::move(s));
      turns_ = 0;
    }
    ++turns_;
    api::Generate g;
    g.set_prompt(o_.prompt);
    g.set_max_new_tokens(1);
    g.set_temperature(0);
    g.set_seed(1);
    const int64_t start = MonotonicNanos();
    CH_ASSIGN_OR_RETURN(api::Done done, session_->Generate(g, [](const api::Piece&) {}));
    const int64_t end = MonotonicNanos();
    if (done.generated_tokens() != 1) return Error("the turn generated no token");
    return static_cast<double>(end - start) / 1e6;
  }
  // Whether the last turn was the first on its session.
  bool first() const { return turns_ == 1; }
  Status Close() {
    if (session_) CH_RETURN_IF_ERROR(session_->Close());
    session_.reset();
    return Ok();
  }

 private:
  const Celld* celld_;
  const Options& o_;
  std::optional<cli::SessionClient> session_;
  int64_t turns_ = 0;
};

// The same turns on an engine in this process.
class EnginePath {
 public:
  static Result<std::unique_ptr<EnginePath>> Open(const std::string& model_path, const Options& o) {
    CH_ASSIGN_OR_RETURN(engine::Model model, engine::Model::Open(model_path));
    CH_ASSIGN_OR_RETURN(engine::Tokenizer tok, engine::Tokenizer::Open(model_path + ".tokenizer",
                                                                       model.config().vocab_size));
    return std::unique_ptr<EnginePath>(new EnginePath(std::move(model), std::move(tok), o));
  }
  Result<double> TurnMs() {
    if (!chat_ || turns_ >= o_.turns_per_session) {
      chat_.reset();
      CH_ASSIGN_OR_RETURN(engine::Conversation c,
                          engine::Conversation::Create(model_, tok_, model_.config().seq_len, {}));
      chat_.emplace(std::move(c));
      turns_ = 0;
    }
    ++turns_;
    const int64_t start = MonotonicNanos();
    CH_ASSIGN_OR_RETURN(engine::Conversation::TurnStats stats,
                        chat_->Turn(o_.prompt, {.max_new_tokens = 1, .temperature = 0.0F},
                                    [](int32_t, std::string_view) { return true; }));
    const int64_t end = MonotonicNanos();
    if (stats.generated_tokens != 1) return Error("the engine's turn generated no token");
    return static_cast<double>(end - start) / 1e6;
  }
  bool first() const { return turns_ == 1; }

 private:
  EnginePath(engine::Model model, engine::Tokenizer tok, const Options& o)
      : model_(std::move(model)), tok_(std::move(tok)), o_(o) {}
  engine::Model model_;
  engine::Tokenizer tok_;
  const Options& o_;
  std::optional<engine::Conversation> chat_;
  int64_t turns_ = 0;
};

Status Run(const Options& o, const WorkDir& dir) {
  CH_ASSIGN_OR_RETURN(std::string model, MakeModel(dir, "tiny", 1));
  CH_RETURN_IF_ERROR(WritePolicy(dir.File("policies"), BenchPolicy{}));
  CH_RETURN_IF_ERROR(WritePolicy(dir.File("policies-no-quota"), BenchPolicy{.cpu_percent = 0}));
  CH_ASSIGN_OR_RETURN(
      auto full,
      Celld::Start(dir, {.name = "full", .model = model, .policy_dir = dir.File("policies")}));
  CH_ASSIGN_OR_RETURN(
      auto no_quota,
      Celld::Start(
          dir, {.name = "no-quota", .model = model, .policy_dir = dir.File("policies-no-quota")}));
  CH_ASSIGN_OR_RETURN(auto no_cgroups, Celld::Start(dir, {.name = "no-cgroups",
                                                          .model = model,
                                                          .policy_dir = dir.File("policies"),
                                                          .cgroups = false}));
  CH_ASSIGN_OR_RETURN(auto bare, Celld::Start(dir, {.name = "bare",
                                                    .model = model,
                                                    .policy_dir = dir.File("policies"),
                                                    .cgroups = false,
                                                    .sandbox = false}));
  CH_ASSIGN_OR_RETURN(auto echo, Echo::Start());
  CH_ASSIGN_OR_RETURN(auto engine, EnginePath::Open(model, o));
  SessionPath full_path(full.get(), o), bare_path(bare.get(), o);
  SessionPath no_quota_path(no_quota.get(), o), no_cgroups_path(no_cgroups.get(), o);

  struct Path {
    const char* key;
    const char* description;
    std::function<Result<double>()> sample;
    std::function<bool()> first;     // the last sample was the first turn on its session
    std::vector<double> ms;          // every other sample
    std::vector<double> first_ms{};  // first turns
  };
  std::vector<Path> paths = {
      {"socketpair",
       "socketpair, 8 bytes there and back (threads)",
       [&] { return echo->RoundTripMs(); },
       [] { return false; },
       {}},
      {"engine",
       "engine in this process: a 1-token turn",
       [&] { return engine->TurnMs(); },
       [&] { return engine->first(); },
       {}},
      {"session",
       "session: sandbox + cgroups (default policy)",
       [&] { return full_path.TurnMs(); },
       [&] { return full_path.first(); },
       {}},
      {"no-quota",
       "session: sandbox + cgroups, no CPU quota",
       [&] { return no_quota_path.TurnMs(); },
       [&] { return no_quota_path.first(); },
       {}},
      {"no-cgroups",
       "session: sandbox, --no-cgroups",
       [&] { return no_cgroups_path.TurnMs(); },
       [&] { return no_cgroups_path.first(); },
       {}},
      {"bare",
       "session: --insecure-no-sandbox --no-cgroups",
       [&] { return bare_path.TurnMs(); },
       [&] { return bare_path.first(); },
       {}},
  };
  // Warm-up: a block of each, discarded.
  for (Path& p : paths) {
    for (int64_t i = 0; i < o.block; ++i) {
      if (Result<double> ms = p.sample(); !ms) return std::move(ms).error().Context(p.description);
    }
  }
  for (int64_t done = 0, round = 0; done < o.samples; done += o.block, ++round) {
    for (size_t k = 0; k < paths.size(); ++k) {
      Path& p = paths[(static_cast<size_t>(round) + k) % paths.size()];
      for (int64_t i = 0; i < o.block; ++i) {
        Result<double> ms = p.sample();
        if (!ms) return std::move(ms).error().Context(p.description);
        (p.first() ? p.first_ms : p.ms).push_back(*ms);
      }
    }
  }
  for (SessionPath* p : {&full_path, &no_quota_path, &no_cgroups_path, &bare_path}) {
    CH_RETURN_IF_ERROR(p->Close());
  }
  for (Celld* c : {full.get(), no_quota.get(), no_cgroups.get(), bare.get()}) {
    CH_RETURN_IF_ERROR(c->Stop());
  }

  Printf(stdout,
         "protocol_bench: Generate(max_new_tokens=1) on the tiny model, %lld samples per path, "
         "interleaved in blocks of %lld%s (us)\n",
         static_cast<long long>(o.samples), static_cast<long long>(o.block),
         o.common.quick ? ", --quick" : "");
  const double engine_p50 = Summarize(paths[1].ms).p50;
  const double socket_p50 = Summarize(paths[0].ms).p50;
  Table table({"path", "p50", "p90", "p99", "max", "p50 - engine", "/ socketpair", "first turn p50",
               "first p99"});
  std::vector<std::string> items;
  for (const Path& p : paths) {
    const Summary s = Summarize(p.ms);
    auto us = [](double ms) { return Format("%.1f", ms * 1000); };
    const Summary f = Summarize(p.first_ms);
    table.AddRow({p.description, us(s.p50), us(s.p90), us(s.p99), us(s.max), us(s.p50 - engine_p50),
                  Format("%.1f", socket_p50 > 0 ? s.p50 / socket_p50 : 0),
                  p.first_ms.empty() ? "-" : us(f.p50), p.first_ms.empty() ? "-" : us(f.p99)});
    cli::JsonObject item;
    item.Add("name", p.key)
        .Add("description", p.description)
        .AddRaw("round_trip_ms", SummaryJson(s));
    if (!p.first_ms.empty()) item.AddRaw("first_turn_ms", SummaryJson(f));
    items.push_back(item.Render());
  }
  table.Print(stdout);
  return WriteJson(o.common.json_path, cli::JsonObject()
                                           .Add("benchmark", "protocol")
                                           .Add("quick", o.common.quick)
                                           .Add("preset", "tiny")
                                           .Add("samples", o.samples)
                                           .AddRaw("paths", cli::JsonArray(items))
                                           .Render());
}

int Main(int argc, char** argv) {
  if (Status st = ReexecWithOneBlasThread(argv); !st) {
    Printf(stderr, "protocol_bench: %s\n", st.error().message().c_str());
    return 1;
  }
  Options o;
  FlagSet flags("protocol_bench [--quick] [--samples N] [--json FILE]",
                "Round trip of a 1-token Generate through a live session, against the engine "
                "in-process and a bare socketpair. Prints figures; asserts nothing about time.");
  AddBenchFlags(flags, &o.common);
  flags.Int("samples", &o.samples, "N", "round trips per path (default 2000; --quick 300)");
  flags.Int("block", &o.block, "N", "samples per path before switching to the next");
  flags.Int("turns-per-session", &o.turns_per_session, "N", "turns before a fresh session");
  if (std::optional<int> done = ParseBenchFlags(flags, "protocol_bench", argc, argv)) {
    return *done;
  }
  if (o.common.quick && !flags.IsSet("samples")) o.samples = 300;
  if (o.samples < 1 || o.block < 1 || o.turns_per_session < 1) {
    Printf(stderr, "protocol_bench: --samples, --block and --turns-per-session must be positive\n");
    return 2;
  }
  Result<WorkDir> dir = WorkDir::Create(o.common.keep);
  if (!dir) {
    Printf(stderr, "protocol_bench: %s\n", dir.error().message().c_str());
    return 1;
  }
  Status st = Run(o, *dir);
  if (!st) {
    dir->Keep();
    Printf(stderr, "protocol_bench: %s\n", st.error().message().c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace cellhouse::bench

int main(int argc, char** argv) { return cellhouse::bench::Main(argc, argv); }
