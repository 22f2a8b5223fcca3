#include "supervisor/notifier.h"

#include <systemd/sd-daemon.h>
#include <time.h>

#include <cstdlib>

#include "base/clock.h"

namespace cellhouse::supervisor {

Notifier::Notifier() {
  // NOLINTNEXTLINE(concurrency-mt-unsafe): read once at start-up, single-threaded
  const char* socket = std::getenv("NOTIFY_SOCKET");
  enabled_ = socket != nullptr && *socket != '\0';
  uint64_t usec = 0;
  // sd_watchdog_enabled checks WATCHDOG_PID too, so a child that inherited the variable does not
  // think the watchdog is its own.
  if (sd_watchdog_enabled(0, &usec) > 0) watchdog_ns_ = static_cast<int64_t>(usec) * 1000;
}

void Notifier::Send(const std::string& state) {
  if (!enabled_) return;
  // Failure to reach the service manager is not fatal to serving clients; systemd will notice
  // a missing READY or WATCHDOG by itself.
  static_cast<void>(sd_notify(0, state.c_str()));
}

void Notifier::Ready(std::string_view status) {
  if (stopping_) {  // a stopping service does not become ready again (a reload during drain)
    Status(status);
    return;
  }
  Send("READY=1\nSTATUS=" + std::string(status));
}

void Notifier::Status(std::string_view status) { Send("STATUS=" + std::string(status)); }

void Notifier::Reloading() {
  if (stopping_) return;
  // systemd >= 253 wants MONOTONIC_USEC with RELOADING=1 for Type=notify-reload; harmless before.
  Send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(MonotonicNanos() / 1000));
}

void Notifier::Stopping(std::string_view status) {
  stopping_ = true;
  Send("STOPPING=1\nSTATUS=" + std::string(status));
}

void Notifier::Watchdog() { Send("WATCHDOG=1"); }

}  // namespace cellhouse::supervisor
