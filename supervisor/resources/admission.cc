#include "supervisor/resources/admission.h"

#include <string>
#include <utility>

#include "base/strings.h"

namespace cellhouse::resources {

namespace {

std::string Sessions(uint32_t n) { return std::to_string(n) + (n == 1 ? " session" : " sessions"); }

}  // namespace

Admission::Admission(AdmissionConfig config, GpuLedger gpus)
    : config_(config), gpus_(std::move(gpus)) {}

uint32_t Admission::SessionsOfTenant(uint32_t uid, const std::string& gateway_tenant) const {
  uint32_t n = 0;
  for (const auto& [id, held] : held_) {
    n += held.tenant_uid == uid && held.gateway_tenant == gateway_tenant ? 1 : 0;
  }
  return n;
}

uint32_t Admission::SessionsOfPolicy(const std::string& policy) const {
  uint32_t n = 0;
  for (const auto& [id, held] : held_) {
    n += held.policy == policy ? 1 : 0;
  }
  return n;
}

uint32_t Admission::SessionsOfTenantUnderPolicy(uint32_t uid, const std::string& gateway_tenant,
                                                const std::string& policy) const {
  uint32_t n = 0;
  for (const auto& [id, held] : held_) {
    n += held.tenant_uid == uid && held.gateway_tenant == gateway_tenant && held.policy == policy;
  }
  return n;
}

std::optional<Refusal> Admission::CheckCaps(const AdmissionRequest& r) const {
  const std::string uid = r.gateway_tenant.empty() ? "uid " + std::to_string(r.tenant_uid)
                                                   : "gateway tenant '" + r.gateway_tenant + "'";
  if (config_.max_sessions != 0 && sessions() >= config_.max_sessions) {
    return Refusal{RefusedBy::kSessions,
                   "session limit: " + std::to_string(sessions()) + " of " +
                       std::to_string(config_.max_sessions) +
                       " sessions are open on this host; try again when one ends."};
  }
  if (config_.max_sessions_per_tenant != 0) {
    uint32_t mine = SessionsOfTenant(r.tenant_uid, r.gateway_tenant);
    if (mine >= config_.max_sessions_per_tenant) {
      return Refusal{RefusedBy::kTenantSessions,
                     "tenant limit: " + uid + " already has " + Sessions(mine) +
                         " open, the most one tenant may have; close one first."};
    }
  }
  if (r.policy_max_sessions != 0) {
    uint32_t under = SessionsOfPolicy(r.policy);
    if (under >= r.policy_max_sessions) {
      return Refusal{RefusedBy::kPolicySessions,
                     "policy limit: policy " + Quote(r.policy) + " already has " +
                         std::to_string(under) + " of its " +
                         std::to_string(r.policy_max_sessions) + " sessions open."};
    }
  }
  if (r.policy_max_sessions_per_tenant != 0) {
    uint32_t mine = SessionsOfTenantUnderPolicy(r.tenant_uid, r.gateway_tenant, r.policy);
    if (mine >= r.policy_max_sessions_per_tenant) {
      return Refusal{RefusedBy::kPolicyTenantSessions,
                     "policy limit: " + uid + " already has " + Sessions(mine) + " under policy " +
                         Quote(r.policy) + ", the most it allows one tenant; close one first."};
    }
  }
  if (r.worst_case_bytes > config_.memory_budget_bytes) {
    return Refusal{RefusedBy::kMemoryBudget,
                   "memory budget: this session needs " + FormatBytes(r.worst_case_bytes) +
                       ", more than the whole budget of " +
                       FormatBytes(config_.memory_budget_bytes) +
                       "; lower the policy's context length or raise --memory-budget."};
  }
  if (r.worst_case_bytes > config_.memory_budget_bytes - committed_bytes_) {
    return Refusal{RefusedBy::kMemoryBudget, "memory budget: " + FormatBytes(committed_bytes_) +
                                                 " of " + FormatBytes(config_.memory_budget_bytes) +
                                                 " committed; this session needs " +
                                                 FormatBytes(r.worst_case_bytes) + "."};
  }
  return std::nullopt;
}

Decision Admission::Admit(const AdmissionRequest& request) {
  if (std::optional<Refusal> refused = CheckCaps(request)) {
    return std::move(*refused);
  }
  std::optional<GpuGrant> gpu;
  if (request.gpu) {
    if (Status valid = ValidateGpuRequest(*request.gpu); !valid) {
      return Refusal{RefusedBy::kInvalidRequest, valid.error().message() + "."};
    }
    if (!gpus_.has_gpu()) {
      return Refusal{RefusedBy::kNoGpu, "GPU share: policy " + Quote(request.policy) +
                                            " asks for a GPU share but this host has none (" +
                                            gpus_.inventory().source + ")."};
    }
    Result<GpuGrant> granted = gpus_.Reserve(*request.gpu);
    if (!granted) {
      return Refusal{RefusedBy::kGpuShare, granted.error().message() + "."};
    }
    gpu = *granted;
  }
  Ticket ticket{.id = next_ticket_++};
  held_[ticket.id] = Held{.tenant_uid = request.tenant_uid,
                          .gateway_tenant = request.gateway_tenant,
                          .policy = request.policy,
                          .bytes = request.worst_case_bytes,
                          .gpu = gpu};
  committed_bytes_ += request.worst_case_bytes;
  return Grant{.ticket = ticket, .gpu = gpu};
}

Status Admission::Release(Ticket ticket) {
  auto it = held_.find(ticket.id);
  if (it == held_.end()) {
    return Error("admission: ticket " + std::to_string(ticket.id) +
                 " is not held (released twice?)");
  }
  Status gpu_released = Ok();
  if (it->second.gpu) {
    gpu_released = gpus_.Release(*it->second.gpu);
  }
  committed_bytes_ -= it->second.bytes;
  held_.erase(it);
  return gpu_released;
}

}  // namespace cellhouse::resources
