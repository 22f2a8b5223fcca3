// Runs the real cellgate binary for end-to-end tests: its own keys file and log in the test's
// directory, an ephemeral port read back from its log ("serving HTTP on ADDR:PORT").
//
//   auto gate = GatewayProcess::Start(dir, {.celld_socket = celld->socket(), .keys = keys});
//   HttpResponse r = HttpRequestTo(gate->port(), "GET", "/health");
//   EXPECT_TRUE(gate->Terminate().Success());
#ifndef CELLHOUSE_TESTS_GATEWAY_GATEWAY_PROCESS_H_
#define CELLHOUSE_TESTS_GATEWAY_GATEWAY_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/process.h"
#include "base/result.h"
#include "tests/support/test_env.h"

namespace cellhouse::gateway::testing {

struct GatewayOptions {
  std::string celld_socket;
  std::string keys;
  std::string user = "nobody";  // cellgate refuses to serve as root
  std::vector<std::string> extra_args;
  // Runs cellgate through this command, e.g. systemd-socket-activate with its options.
  std::vector<std::string> prefix;
  // Started on the first connection (systemd-socket-activate): do not wait for it; port() is
  // then this one.
  uint16_t activated_port = 0;
};

class GatewayProcess {
 public:
  static Result<std::unique_ptr<GatewayProcess>> Start(const cellhouse::testing::TempDir& dir,
                                                       const GatewayOptions& options);
  ~GatewayProcess();

  uint16_t port() const { return port_; }
  uint16_t metrics_port() const { return metrics_port_; }
  pid_t pid() const { return process_.pid(); }
  std::string Log() const;
  Status Signal(int signal) const { return process_.Kill(signal); }
  ExitStatus Terminate(int timeout_ms = 30'000);
  bool running();

 private:
  GatewayProcess() = default;
  ChildProcess process_;
  std::string log_path_;
  uint16_t port_ = 0;
  uint16_t metrics_port_ = 0;
};

// `cellgate key add`: the new key (fails the test on error).
std::string AddKey(const std::string& keys_file, const std::string& tenant);

}  // namespace cellhouse::gateway::testing

#endif  // CELLHOUSE_TESTS_GATEWAY_GATEWAY_PROCESS_H_
