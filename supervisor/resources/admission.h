// Admission control: whether celld may start one more session, decided at once and never
// queued. A session is admitted only if every cap has room and its worst-case memory (computed
// by the caller from the model and the policy: KV cache for its context, activations, fixed
// overhead) fits in what is left of the memory budget, and its GPU share (if the policy asks for
// one) fits on a device. Otherwise the refusal says which limit, in one sentence for the client.
//
//   Admission admission({.memory_budget_bytes = DefaultMemoryBudget(...), .max_sessions = 64},
//                       GpuLedger(std::move(gpus)));
//   Decision d = admission.Admit({.tenant_uid = peer.uid, .policy = policy.name(),
//                                 .worst_case_bytes = bytes, .policy_max_sessions = 16});
//   if (const Refusal* no = std::get_if<Refusal>(&d)) return ErrorResponse(ADMISSION_REFUSED,
//                                                                         no->message);
//   const Grant& grant = std::get<Grant>(d);  // keep grant.ticket with the session
//   ... when the session has ended and its cgroup is gone:
//   CH_RETURN_IF_ERROR(admission.Release(grant.ticket));
#ifndef CELLHOUSE_SUPERVISOR_RESOURCES_ADMISSION_H_
#define CELLHOUSE_SUPERVISOR_RESOURCES_ADMISSION_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>

#include "base/result.h"
#include "supervisor/resources/gpu_share.h"

namespace cellhouse::resources {

struct AdmissionConfig {
  uint64_t memory_budget_bytes = 0;      // --memory-budget (see memory_budget.h for the default)
  uint32_t max_sessions = 0;             // on this host; 0: no cap
  uint32_t max_sessions_per_tenant = 0;  // per uid across policies; 0: no cap
};

struct AdmissionRequest {
  uint32_t tenant_uid = 0;
  // A tenant of the HTTP gateway (celld --gateway-user): caps per tenant count
  // (tenant_uid, gateway_tenant), so every gateway tenant has its own. Empty: a direct client.
  std::string gateway_tenant;
  std::string policy;
  uint64_t worst_case_bytes = 0;
  uint32_t policy_max_sessions = 0;             // this policy, all tenants; 0: no cap
  uint32_t policy_max_sessions_per_tenant = 0;  // this policy, this tenant; 0: no cap
  std::optional<GpuRequest> gpu;
};

// A plain handle: holding one commits nothing by itself, releasing it is explicit.
struct Ticket {
  uint64_t id = 0;  // never 0 when issued
};

struct Grant {
  Ticket ticket;
  std::optional<GpuGrant> gpu;
};

// Which limit refused, for metrics; the message is for the client.
enum class RefusedBy {
  kSessions,              // max_sessions
  kTenantSessions,        // max_sessions_per_tenant
  kPolicySessions,        // policy_max_sessions
  kPolicyTenantSessions,  // policy_max_sessions_per_tenant
  kMemoryBudget,
  kNoGpu,           // the policy asks for a GPU share, the host has none
  kGpuShare,        // no device has room for the share
  kInvalidRequest,  // e.g. a GPU share outside (0, 1]
};

struct Refusal {
  RefusedBy limit = RefusedBy::kInvalidRequest;
  std::string message;
};

using Decision = std::variant<Grant, Refusal>;

class Admission {
 public:
  Admission(AdmissionConfig config, GpuLedger gpus);

  // Checks, in this order: total sessions, the tenant's sessions, the policy's sessions, the
  // tenant's sessions under the policy, the memory budget, the GPU share. Commits everything
  // or nothing.
  Decision Admit(const AdmissionRequest& request);
  // Gives back what the ticket committed; an unknown or already released ticket is an error.
  Status Release(Ticket ticket);

  const AdmissionConfig& config() const { return config_; }
  uint64_t committed_bytes() const { return committed_bytes_; }
  uint32_t sessions() const { return static_cast<uint32_t>(held_.size()); }
  uint32_t SessionsOfTenant(uint32_t uid, const std::string& gateway_tenant = "") const;
  uint32_t SessionsOfPolicy(const std::string& policy) const;
  const GpuLedger& gpus() const { return gpus_; }

 private:
  struct Held {
    uint32_t tenant_uid = 0;
    std::string gateway_tenant;
    std::string policy;
    uint64_t bytes = 0;
    std::optional<GpuGrant> gpu;
  };

  std::optional<Refusal> CheckCaps(const AdmissionRequest& request) const;
  uint32_t SessionsOfTenantUnderPolicy(uint32_t uid, const std::string& gateway_tenant,
                                       const std::string& policy) const;

  AdmissionConfig config_;
  GpuLedger gpus_;
  uint64_t committed_bytes_ = 0;
  uint64_t next_ticket_ = 1;
  std::map<uint64_t, Held> held_;  // by ticket id
};

}  // namespace cellhouse::resources

#endif  // CELLHOUSE_SUPERVISOR_RESOURCES_ADMISSION_H_
