#include "tests/gateway/gateway_process.h"

#include <fcntl.h>
#include <signal.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "base/clock.h"
#include "base/io.h"
#include "tests/support/celld_harness.h"

namespace cellhouse::gateway::testing {
namespace {

int g_counter = 0;

// The port after `marker` in the log ("serving HTTP on 127.0.0.1:41234"), or 0.
uint16_t PortAfter(const std::string& log, const std::string& marker) {
  size_t at = log.find(marker);
  if (at == std::string::npos) return 0;
  size_t end = log.find('\n', at);
  std::string line = log.substr(at, end == std::string::npos ? std::string::npos : end - at);
  size_t colon = line.rfind(':');
  return static_cast<uint16_t>(std::atoi(line.c_str() + colon + 1));
}

}  // namespace

Result<std::unique_ptr<GatewayProcess>> GatewayProcess::Start(
    const cellhouse::testing::TempDir& dir, const GatewayOptions& options) {
  std::unique_ptr<GatewayProcess> gate(new GatewayProcess());
  gate->log_path_ = dir.File("cellgate" + std::to_string(g_counter++) + ".log");
  std::vector<std::string> argv = {cellhouse::testing::BinPath("cellgate"),
                                   "--keys",
                                   options.keys,
                                   "--celld-socket",
                                   options.celld_socket,
                                   "--listen",
                                   "127.0.0.1:0",
                                   "--metrics-listen",
                                   "127.0.0.1:0",
                                   "--log-level",
                                   "debug"};
  if (!options.user.empty()) {
    argv.push_back("--user");
    argv.push_back(options.user);
  }
  argv.insert(argv.end(), options.extra_args.begin(), options.extra_args.end());
  argv.insert(argv.begin(), options.prefix.begin(), options.prefix.end());
  UniqueFd log(::open(gate->log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!log.valid()) return Error::FromErrno(errno, "open " + gate->log_path_);
  CH_ASSIGN_OR_RETURN(gate->process_,
                      SpawnProgram({.argv = argv, .fds = {{2, log.get()}, {1, log.get()}}}));
  if (options.activated_port != 0) {
    gate->port_ = options.activated_port;
    return gate;
  }
  int64_t deadline = MonotonicNanos() + 30 * kNanosPerSecond;
  while (MonotonicNanos() < deadline) {
    std::string text = gate->Log();
    if (text.find("cellgate ready") != std::string::npos) {
      gate->port_ = PortAfter(text, "serving HTTP on ");
      gate->metrics_port_ = PortAfter(text, "serving metrics on ");
      return gate;
    }
    auto ended = gate->process_.TryReap();
    if (ended && ended->has_value()) {
      return Error("cellgate " + (*ended)->ToString() + " before serving:\n" + text);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  static_cast<void>(gate->process_.Kill(SIGKILL));
  static_cast<void>(gate->process_.Wait());
  return Error("cellgate did not start within 30 s:\n" + gate->Log());
}

GatewayProcess::~GatewayProcess() {
  if (process_.valid() && !process_.reaped()) {
    static_cast<void>(process_.Kill(SIGKILL));
    static_cast<void>(process_.Wait());
  }
}

std::string GatewayProcess::Log() const {
  Result<std::string> text = ReadFileToString(log_path_, size_t{64} << 20);
  return text ? *text : std::string();
}

bool GatewayProcess::running() {
  if (process_.reaped()) return false;
  auto ended = process_.TryReap();
  return !(ended && ended->has_value());
}

ExitStatus GatewayProcess::Terminate(int timeout_ms) {
  static_cast<void>(process_.Kill(SIGTERM));
  int64_t deadline = MonotonicNanos() + timeout_ms * kNanosPerMilli;
  while (MonotonicNanos() < deadline) {
    auto ended = process_.TryReap();
    if (ended && ended->has_value()) return **ended;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  static_cast<void>(process_.Kill(SIGKILL));
  auto killed = process_.Wait();
  return killed ? *killed : ExitStatus{};
}

std::string AddKey(const std::string& keys_file, const std::string& tenant) {
  cellhouse::testing::CommandResult r =
      cellhouse::testing::RunCommand({cellhouse::testing::BinPath("cellgate"), "key", "add",
                                      "--keys", keys_file, "--tenant", tenant});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::string key = r.out;
  while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
  return key;
}

}  // namespace cellhouse::gateway::testing
