#include "supervisor/outcome.h"

#include <signal.h>

#include <gtest/gtest.h>

#include "ipc/worker_contract.h"

namespace cellhouse::supervisor {
namespace {

ExitStatus Signaled(int sig) {
  ExitStatus st;
  st.kind = ExitStatus::Kind::kSignaled;
  st.signal = sig;
  return st;
}

ExitStatus Exited(int code) {
  ExitStatus st;
  st.code = code;
  return st;
}

TEST(OutcomeTest, SeccompKillIsNamedFromTheAuditRecord) {
  SessionEnd end = ClassifyEnd({.status = Signaled(SIGSYS), .seccomp_syscall = "ptrace"});
  EXPECT_EQ(end.outcome, api::SECCOMP_VIOLATION);
  EXPECT_EQ(end.message, "the sandbox stopped the session: forbidden system call 'ptrace'");
  EXPECT_EQ(end.reason_label, "seccomp");
  SessionEnd unnamed = ClassifyEnd({.status = Signaled(SIGSYS)});
  EXPECT_EQ(unnamed.message, "the sandbox stopped the session: a forbidden system call");
}

TEST(OutcomeTest, SigkillWithAnOomKillIsTheMemoryLimitEvenIfCelldWasEndingIt) {
  SessionEnd end = ClassifyEnd({.status = Signaled(SIGKILL),
                                .requested = api::KILLED,
                                .oom_kills = 1,
                                .memory_limit_bytes = 64ull << 20});
  EXPECT_EQ(end.outcome, api::OOM_KILLED);
  EXPECT_EQ(end.message, "memory limit exceeded (limit 64 MiB)");
  EXPECT_EQ(end.reason_label, "oom");
}

TEST(OutcomeTest, CelldsOwnReasonWinsOverTheWorkersExitCode) {
  // A worker that exits 0 ("closed") while celld was killing it for lying is not believed.
  SessionEnd end = ClassifyEnd({.status = Exited(0),
                                .requested = api::PROTOCOL_VIOLATION,
                                .requested_reason = "the worker reported impossible usage"});
  EXPECT_EQ(end.outcome, api::PROTOCOL_VIOLATION);
  EXPECT_EQ(end.message, "the worker reported impossible usage");
  EXPECT_EQ(end.reason_label, "error");
}

TEST(OutcomeTest, WorkerExitCodesAreHintsForOrdinaryEnds) {
  EXPECT_EQ(ClassifyEnd({.status = Exited(0)}).outcome, api::CLOSED);
  EXPECT_EQ(
      ClassifyEnd({.status = Exited(static_cast<int>(ipc::WorkerExit::kIdleTimeout))}).reason_label,
      "idle");
  SessionEnd crash = ClassifyEnd({.status = Signaled(SIGSEGV)});
  EXPECT_EQ(crash.outcome, api::WORKER_CRASHED);
  EXPECT_EQ(crash.message, "the session's worker killed by signal SIGSEGV (Segmentation fault)");
  EXPECT_EQ(ClassifyEnd({.status = Exited(3)}).outcome, api::WORKER_CRASHED);
}

TEST(OutcomeTest, SetupFailureSaysWhichStep) {
  SessionEnd end =
      ClassifyEnd({.status = Exited(121), .setup_failure = "sandbox step 'setrlimit' failed: ..."});
  EXPECT_EQ(end.outcome, api::SETUP_FAILED);
  EXPECT_EQ(end.message, "the session could not start: sandbox step 'setrlimit' failed: ...");
}

}  // namespace
}  // namespace cellhouse::supervisor
