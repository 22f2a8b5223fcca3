#include "cli/cellctl/commands.h"

#include <signal.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>

#include "base/flags.h"
#include "base/print.h"
#include "base/strings.h"
#include "base/text.h"
#include "cli/cellctl/cli_common.h"
#include "cli/cellctl/json.h"
#include "cli/cellctl/session_client.h"
#include "ipc/defaults.h"
#include "ipc/messages.h"

namespace cellhouse::cli {
namespace {

volatile std::sig_atomic_t g_interrupted = 0;  // NOLINT: written by the SIGINT handler only

void OnInterrupt(int) { g_interrupted = 1; }

// Ctrl-C during a generation cancels it instead of killing cellctl.
void CatchInterrupt() {
  struct sigaction sa {};
  sa.sa_handler = OnInterrupt;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
}

// Options shared by generate, chat and attach: what each turn asks for.
struct TurnFlags {
  int64_t max_tokens = 0;
  double temperature = ipc::kDefaultTemperature;  // what celld's workers take when unset
  double top_p = ipc::kDefaultTopP;
  int64_t seed = -1;
  int64_t top_k = 0;
  double min_p = 0.0;
  double repeat_penalty = 1.0;
  std::vector<std::string> stop;
  bool stats = false;
  // Chat turns (cellctl chat on a model with a chat template).
  std::string system;
  bool no_think = false;
  bool raw = false;

  void Register(FlagSet& flags) {
    flags.Int("max-tokens", &max_tokens, "N", "new tokens per turn (0: the policy's maximum)");
    flags.Double("temperature", &temperature, "T", "0 is greedy decoding (default 1)");
    flags.Double("top-p", &top_p, "P", "nucleus sampling threshold in (0, 1] (default 0.9)");
    flags.Int("top-k", &top_k, "K", "keep the K most likely tokens (0: off)");
    flags.Double("min-p", &min_p, "P", "drop tokens below P times the most likely (0: off)");
    flags.Double("repeat-penalty", &repeat_penalty, "R", "penalty on recent tokens (1: off)");
    flags.StringList("stop", &stop, "TEXT", "end the turn where TEXT appears (repeatable)");
    flags.Int("seed", &seed, "S", "sampler seed (default: random)");
    flags.Bool("stats", &stats, "print token counts and speeds to stderr after each turn");
  }
  void RegisterChat(FlagSet& flags) {
    flags.String("system", &system, "TEXT", "a system message before the first turn");
    flags.Bool("no-think", &no_think, "ask Qwen3-style models to answer without reasoning");
    flags.Bool("raw", &raw, "send lines as plain prompts even when the model has a chat template");
  }
  api::Generate Make(const std::string& prompt) const {
    api::Generate g;
    g.set_prompt(prompt);
    if (max_tokens > 0) g.set_max_new_tokens(static_cast<uint32_t>(max_tokens));
    g.set_temperature(static_cast<float>(temperature));
    g.set_top_p(static_cast<float>(top_p));
    if (seed >= 0) g.set_seed(static_cast<uint64_t>(seed));
    if (top_k > 0) g.set_top_k(static_cast<uint32_t>(top_k));
    if (min_p > 0.0) g.set_min_p(static_cast<float>(min_p));
    if (repeat_penalty != 1.0) g.set_repetition_penalty(static_cast<float>(repeat_penalty));
    for (const std::string& s : stop) g.add_stop(s);
    return g;
  }
  // A chat turn: the line as a user message after the session's own conversation.
  api::Generate MakeChat(const std::string& line, bool first) const {
    api::Generate g = Make("");
    api::ChatTurn* chat = g.mutable_chat();
    chat->set_append(true);
    if (first && !system.empty()) {
      api::ChatMessage* s = chat->add_messages();
      s->set_role("system");
      s->set_content(system);
    }
    api::ChatMessage* m = chat->add_messages();
    m->set_role("user");
    m->set_content(line);
    if (no_think) chat->set_enable_thinking(false);
    return g;
  }
};

void PrintStats(const api::Done& d) {
  Printf(stderr,
         "[%u prompt tokens (%u cached), %u generated, first token %.1f ms, prefill %.1f tok/s, "
         "decode %.1f tok/s, context %u, %s]\n",
         d.prompt_tokens(), d.cached_tokens(), d.generated_tokens(),
         static_cast<double>(d.time_to_first_token_us()) / 1000.0, d.prefill_tokens_per_second(),
         d.decode_tokens_per_second(), d.context_used(),
         api::Done::StopReason_Name(d.stop_reason()).c_str());
}

// Fails with `what` after closing the session, unless it has ended already: a refused request
// (a parameter over the policy's limit, a prompt that does not fit) must not leave a session
// holding one of its tenant's slots until it times out.
int FailAndClose(SessionClient& session, const std::string& what) {
  std::optional<api::Error> why = session.last_error();
  if (!why || why->code() != api::SESSION_ENDED) static_cast<void>(session.Close());
  return Fail(what, why);
}

// Runs one turn, streaming text to stdout (a chat turn's reasoning to stderr). Returns an exit
// status; on failure the session is closed (FailAndClose).
int RunTurn(SessionClient& session, const TurnFlags& turn, const api::Generate& request) {
  g_interrupted = 0;
  Result<api::Done> done = session.Generate(
      request,
      [](const api::Piece& p) {
        if (!p.reasoning().empty()) WriteAndFlush(stderr, p.reasoning());
        // As `cellmodel run` prints it (llama2.c's safe_printf), so the two compare exactly.
        std::string_view text = PrintablePiece(p.text());
        WriteAndFlush(stdout, text);
      },
      [] { return g_interrupted != 0; });
  WriteAndFlush(stdout, "\n");
  if (!done) return FailAndClose(session, done.error().message());
  if (turn.stats) PrintStats(*done);
  return kExitOk;
}

// Where a lost connection can pick the conversation up again, for `chat`: on stderr, so that a
// pipe's output stays the text alone.
void PrintReattach(const SessionClient& session) {
  const api::SessionOpened& o = session.opened();
  Printf(stderr,
         "session %s; if the connection is lost, continue within %s with:\n"
         "  cellctl attach %s --token %s\n",
         ipc::IdToHex(o.session_id()).c_str(), Duration(o.detached_grace_ms()).c_str(),
         ipc::IdToHex(o.session_id()).c_str(), ipc::IdToHex(o.token()).c_str());
}

// One line a turn until end of input or /quit; works with a pipe as well as a terminal. With a
// model that has a chat template each line is a user message in the session's conversation
// (rendered with the template, ending at the model's end of turn); otherwise a plain prompt.
int ChatLoop(SessionClient& session, const TurnFlags& turn) {
  bool tty = ::isatty(STDIN_FILENO) == 1;
  const bool chat = !turn.raw && !session.ready().chat_template().empty();
  if (tty) {
    Printf(stderr, "session %s (policy %s, context %u tokens, %s). /quit or Ctrl-D ends it.\n",
           ipc::IdToHex(session.opened().session_id()).c_str(), session.opened().policy().c_str(),
           session.ready().context_length(),
           chat ? ("chat template " + session.ready().chat_template()).c_str() : "plain prompts");
  }
  bool first = true;
  std::string line;
  for (;;) {
    if (tty) WriteAndFlush(stderr, "> ");
    if (!std::getline(std::cin, line)) break;
    std::string_view text = Trim(line);
    if (text.empty()) continue;
    if (text == "/quit" || text == "/exit") break;
    const std::string message(text);
    int status = RunTurn(session, turn, chat ? turn.MakeChat(message, first) : turn.Make(message));
    if (status != kExitOk) return status;
    first = false;
  }
  Status closed = session.Close();
  if (!closed) return Fail(closed.error().message(), session.last_error());
  return kExitOk;
}

}  // namespace

int CmdGenerate(const GlobalOptions& global, const std::vector<std::string>& args) {
  std::string prompt, policy;
  int64_t max_context = 0;
  TurnFlags turn;
  FlagSet flags("cellctl generate --prompt TEXT [options]",
                "Opens a session, streams the text generated after the prompt to stdout, closes.");
  flags.String("prompt", &prompt, "TEXT", "the prompt (required)");
  flags.String("policy", &policy, "NAME", "policy to run under (default: your default)");
  flags.Int("max-context", &max_context, "N", "context length (default: the policy's)");
  turn.Register(flags);
  std::vector<std::string> rest;
  if (auto stop = ParseFlags(flags, args, &rest)) return *stop;
  if (!rest.empty()) {
    Printf(stderr, "cellctl generate: unexpected argument %s\n", Quote(rest[0]).c_str());
    return kExitUsage;
  }
  if (!flags.IsSet("prompt")) {
    Printf(stderr, "cellctl generate: --prompt is required\n");
    return kExitUsage;
  }
  CatchInterrupt();
  std::optional<api::Error> refusal;
  Result<SessionClient> session = SessionClient::Open(
      global.socket, {.policy = policy, .max_context = static_cast<uint32_t>(max_context)},
      &refusal);
  if (!session) return Fail(session.error().message(), refusal);
  int status = RunTurn(*session, turn, turn.Make(prompt));
  if (status != kExitOk) return status;
  Status closed = session->Close();
  if (!closed) return Fail(closed.error().message(), session->last_error());
  return kExitOk;
}

int CmdChat(const GlobalOptions& global, const std::vector<std::string>& args) {
  std::string policy;
  int64_t max_context = 0;
  TurnFlags turn;
  FlagSet flags("cellctl chat [options]",
                "An interactive multi-turn session: one line a turn, from a terminal or a pipe.\n"
                "An interactive multi-turn session: one line a turn, from a terminal or a pipe.\n"
                "With a model that has a chat template each line is a user message, rendered by\n"
                "the template, and the reply ends at the model's end of turn (reasoning goes to\n"
                "stderr); otherwise lines are plain prompts. The conversation is kept between\n"
                "turns. /quit or end of input closes it. Its id and re-attach token go to stderr\n"
                "first: after a lost connection, `cellctl attach ID --token T` continues it\n"
                "within its detached grace.");
  flags.String("policy", &policy, "NAME", "policy to run under");
  flags.Int("max-context", &max_context, "N", "context length (default: the policy's)");
  turn.Register(flags);
  turn.RegisterChat(flags);
  std::vector<std::string> rest;
  if (auto stop = ParseFlags(flags, args, &rest)) return *stop;
  CatchInterrupt();
  std::optional<api::Error> refusal;
  Result<SessionClient> session = SessionClient::Open(
      global.socket, {.policy = policy, .max_context = static_cast<uint32_t>(max_context)},
      &refusal);
  if (!session) return Fail(session.error().message(), refusal);
  PrintReattach(*session);
  return ChatLoop(*session, turn);
}

int CmdOpen(const GlobalOptions& global, const std::vector<std::string>& args) {
  std::string policy;
  int64_t max_context = 0;
  FlagSet flags("cellctl open [--policy NAME]",
                "Opens a session and prints its id and re-attach token; the session then waits\n"
                "(detached) for `cellctl attach ID --token T` within its policy's detached grace\n"
                "(budgets.detached_grace_seconds, 60 s by default), then ends.");
  flags.String("policy", &policy, "NAME", "policy to run under");
  flags.Int("max-context", &max_context, "N", "context length (default: the policy's)");
  std::vector<std::string> rest;
  if (auto stop = ParseFlags(flags, args, &rest)) return *stop;
  std::optional<api::Error> refusal;
  Result<SessionClient> session = SessionClient::Open(
      global.socket, {.policy = policy, .max_context = static_cast<uint32_t>(max_context)},
      &refusal);
  if (!session) return Fail(session.error().message(), refusal);
  const api::SessionOpened& o = session->opened();
  if (global.json) {
    JsonObject j;
    j.Add("session_id", ipc::IdToHex(o.session_id()))
        .Add("token", ipc::IdToHex(o.token()))
        .Add("policy", o.policy())
        .Add("context_length", o.context_length())
        .Add("idle_timeout_ms", o.idle_timeout_ms())
        .Add("detached_grace_ms", o.detached_grace_ms());
    Printf(stdout, "%s\n", j.Render().c_str());
  } else {
    Printf(stdout, "session %s\ntoken %s\n", ipc::IdToHex(o.session_id()).c_str(),
           ipc::IdToHex(o.token()).c_str());
  }
  Printf(stderr, "re-attach within %s: cellctl attach %s --token %s\n",
         Duration(o.detached_grace_ms()).c_str(), ipc::IdToHex(o.session_id()).c_str(),
         ipc::IdToHex(o.token()).c_str());
  session->Detach();
  return kExitOk;
}

int CmdAttach(const GlobalOptions& global, const std::vector<std::string>& args) {
  std::string token, prompt;
  TurnFlags turn;
  FlagSet flags("cellctl attach ID --token T [--prompt TEXT]",
                "Re-attaches to your session ID and continues its conversation: one turn with\n"
                "--prompt, otherwise interactively as `cellctl chat`.");
  flags.String("token", &token, "T", "the token `cellctl open` printed (required)");
  flags.String("prompt", &prompt, "TEXT", "run one turn and close the session");
  turn.Register(flags);
  turn.RegisterChat(flags);
  std::vector<std::string> rest;
  if (auto stop = ParseFlags(flags, args, &rest)) return *stop;
  if (rest.size() != 1 || token.empty()) {
    Printf(stderr, "cellctl attach: expected a session ID and --token; see --help\n");
    return kExitUsage;
  }
  Result<std::string> id = HexArg(rest[0], "session ID");
  Result<std::string> tok = HexArg(token, "--token");
  if (!id || !tok) {
    Printf(stderr, "cellctl attach: %s\n", (!id ? id.error() : tok.error()).message().c_str());
    return kExitUsage;
  }
  CatchInterrupt();
  std::optional<api::Error> refusal;
  Result<SessionClient> session = SessionClient::Attach(global.socket, *id, *tok, &refusal);
  if (!session) return Fail(session.error().message(), refusal);
  if (!flags.IsSet("prompt")) return ChatLoop(*session, turn);
  int status = RunTurn(*session, turn, turn.Make(prompt));
  if (status != kExitOk) return status;
  Status closed = session->Close();
  return closed ? kExitOk : Fail(closed.error().message(), session->last_error());
}

}  // namespace cellhouse::cli
