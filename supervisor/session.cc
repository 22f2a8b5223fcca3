#include "supervisor/session.h"

#include <utility>

namespace cellhouse::supervisor {

void OwnedTimer::Arm(int64_t deadline_ns, EventLoop::TimerCallback callback) {
  Cancel();
  // The loop moves the callback out before running it, and the timer is cancelled before its
  // holder goes: `this` is alive whenever this runs. id_ is cleared first, so the callback may
  // destroy the holder.
  id_ = loop_->AddTimer(deadline_ns, [this, callback = std::move(callback)] {
    id_ = 0;
    callback();
  });
}

void OwnedTimer::Cancel() {
  if (id_ != 0) loop_->CancelTimer(id_);
  id_ = 0;
}

Session::Session(std::string id, uint64_t number,
                 std::shared_ptr<const policy::CompiledPolicy> policy_in, EventLoop& loop,
                 int64_t created)
    : policy(std::move(policy_in)),
      created_ns(created),
      heartbeat_timer(loop),
      lifetime_timer(loop),
      detach_timer(loop),
      kill_timer(loop),
      finalize_timer(loop),
      id_(std::move(id)),
      number_(number) {}

void Session::BecomePooled() {
  if (state_ == State::kSpawning) state_ = State::kPooled;
}

void Session::StartRunning(int64_t now_ns) {
  if (state_ == State::kEnding) return;
  state_ = State::kRunning;
  running_since_ns = now_ns;
  last_heard_ns = now_ns;
}

bool Session::BeginEnding(api::SessionOutcome outcome, std::string reason) {
  if (!requested_end_) {
    requested_end_ = outcome;
    requested_reason_ = std::move(reason);
  }
  const bool was_ending = state_ == State::kEnding;
  state_ = State::kEnding;
  // Nothing but the kill timer and the audit wait matter once it ends.
  heartbeat_timer.Cancel();
  lifetime_timer.Cancel();
  detach_timer.Cancel();
  return !was_ending;
}

void Session::FailSetup(std::string why) {
  setup_failure_ = std::move(why);
  state_ = State::kEnding;
}

void Session::MarkAttached() {
  attached_ = true;
  detached_since_ns_ = 0;
  detach_timer.Cancel();
}

void Session::MarkDetached(int64_t now_ns) {
  attached_ = false;
  detached_since_ns_ = now_ns;
}

void Session::CancelTimers() {
  for (OwnedTimer* t :
       {&heartbeat_timer, &lifetime_timer, &detach_timer, &kill_timer, &finalize_timer}) {
    t->Cancel();
  }
}

}  // namespace cellhouse::supervisor
