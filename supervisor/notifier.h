// Talking to systemd: sd_notify(3) for READY=1, STATUS=, RELOADING=1, STOPPING=1, WATCHDOG=1.
// Not running under systemd (no NOTIFY_SOCKET) is normal: every call is then a no-op.
//
// READY=1 ends start-up for a Type=notify service: celld sends it once its sockets are served,
// and again after each RELOADING=1. After Stopping(), Reloading() sends nothing and Ready()
// only STATUS=: a stopping service does not become ready again.
//
//   Notifier notifier;                       // reads NOTIFY_SOCKET / WATCHDOG_USEC once
//   notifier.Ready("3 sessions active");
//   if (notifier.watchdog_interval_ns() > 0) ... call notifier.Watchdog() at half of it ...
#ifndef CELLHOUSE_SUPERVISOR_NOTIFIER_H_
#define CELLHOUSE_SUPERVISOR_NOTIFIER_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace cellhouse::supervisor {

class Notifier {
 public:
  Notifier();
  bool enabled() const { return enabled_; }
  // 0 when the service manager asked for no watchdog.
  int64_t watchdog_interval_ns() const { return watchdog_ns_; }

  void Ready(std::string_view status);
  void Status(std::string_view status);
  void Reloading();
  void Stopping(std::string_view status);
  void Watchdog();

 private:
  void Send(const std::string& state);
  bool enabled_ = false;
  bool stopping_ = false;
  int64_t watchdog_ns_ = 0;
};

}  // namespace cellhouse::supervisor

#endif  // CELLHOUSE_SUPERVISOR_NOTIFIER_H_
