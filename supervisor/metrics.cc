#include "supervisor/metrics.h"

#include <charconv>
#include <cmath>
#include <system_error>

namespace cellhouse::supervisor {
namespace {

// The shortest text that reads back as the same double, in %g style as Prometheus clients write
// it ("0.0005", not "%.17g"'s "0.00050000000000000001"): bucket bounds are label values that
// dashboards match on.
std::string FormatDouble(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::general);
  return ec == std::errc() ? std::string(buf, end) : std::string("NaN");
}

void Header(std::string* out, const std::string& name, const std::string& help, const char* type) {
  *out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

std::string Labels(const std::vector<std::string>& names, const std::vector<std::string>& values) {
  if (names.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    if (i > 0) out += ",";
    out += names[i] + "=\"" + EscapeLabelValue(values[i]) + "\"";
  }
  return out + "}";
}

void Gauge(std::string* out, const std::string& name, const std::string& help, uint64_t value) {
  Header(out, name, help, "gauge");
  *out += name + " " + std::to_string(value) + "\n";
}

void GaugeByPolicy(std::string* out, const std::string& name, const std::string& help,
                   const std::map<std::string, uint64_t>& values) {
  Header(out, name, help, "gauge");
  for (const auto& [policy, value] : values) {
    *out += name + Labels({"policy"}, {policy}) + " " + std::to_string(value) + "\n";
  }
}

}  // namespace

std::string EscapeLabelValue(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

uint64_t LabeledCounter::Get(const std::vector<std::string>& labels) const {
  auto it = values_.find(labels);
  return it == values_.end() ? 0 : it->second;
}

void LabeledCounter::Render(std::string* out) const {
  Header(out, name_, help_, "counter");
  for (const auto& [labels, value] : values_) {
    *out += name_ + Labels(label_names_, labels) + " " +
            (scale_ == 1.0 ? std::to_string(value)
                           : FormatDouble(static_cast<double>(value) * scale_)) +
            "\n";
  }
}

Histogram::Histogram(std::string name, std::string help, std::vector<double> bounds)
    : name_(std::move(name)),
      help_(std::move(help)),
      bounds_(std::move(bounds)),
      buckets_(bounds_.size(), 0) {}

void Histogram::Observe(double value) {
  if (!std::isfinite(value)) return;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    if (value <= bounds_[i]) {
      ++buckets_[i];
      break;
    }
  }
  sum_ += value;
  ++count_;
}

void Histogram::Render(std::string* out) const {
  Header(out, name_, help_, "histogram");
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += buckets_[i];
    *out += name_ + "_bucket{le=\"" + FormatDouble(bounds_[i]) + "\"} " +
            std::to_string(cumulative) + "\n";
  }
  *out += name_ + "_bucket{le=\"+Inf\"} " + std::to_string(count_) + "\n";
  *out += name_ + "_sum " + FormatDouble(sum_) + "\n";
  *out += name_ + "_count " + std::to_string(count_) + "\n";
}

std::string Metrics::Render(const GaugeSnapshot& g, const std::string& version) const {
  std::string out;
  Header(&out, "cellhouse_build_info", "Build information; the value is always 1.", "gauge");
  out += "cellhouse_build_info{version=\"" + EscapeLabelValue(version) + "\"} 1\n";
  GaugeByPolicy(&out, "cellhouse_sessions_active", "Sessions with a live worker, by policy.",
                g.sessions_active);
  // Every policy that has a sessions_active series gets a memory series too, 0 while it has no
  // session, so a dashboard's sum by policy does not lose a policy between sessions.
  std::map<std::string, uint64_t> policy_memory = g.policy_memory_bytes;
  for (const auto& [policy, count] : g.sessions_active) policy_memory.emplace(policy, 0);
  GaugeByPolicy(&out, "cellhouse_policy_memory_bytes",
                "Memory charged to the cgroups of a policy's sessions.", policy_memory);
  Gauge(&out, "cellhouse_weights_mapped_bytes", "Size of the shared read-only weight mapping.",
        g.weights_mapped_bytes);
  Gauge(&out, "cellhouse_weights_resident_bytes",
        "Bytes of the weights in memory now (mincore on the model file).",
        g.weights_resident_bytes);
  Gauge(&out, "cellhouse_memory_budget_bytes", "Memory celld may commit to sessions.",
        g.memory_budget_bytes);
  Gauge(&out, "cellhouse_memory_committed_bytes", "Worst-case memory of the admitted sessions.",
        g.memory_committed_bytes);
  Gauge(&out, "cellhouse_connections_pending", "Client connections that are not (yet) sessions.",
        g.connections_pending);
  sessions_started.Render(&out);
  sessions_ended.Render(&out);
  admission_refusals.Render(&out);
  tokens_generated.Render(&out);
  seccomp_violations.Render(&out);
  worker_reports_dropped.Render(&out);
  executor_rows.Render(&out);
  executor_cpu.Render(&out);
  executor_batches.Render(&out);
  executor_gathers_cut_short.Render(&out);
  executor_late.Render(&out);
  executor_slot_events.Render(&out);
  executor_pauses.Render(&out);
  executor_exits.Render(&out);
  open_latency.Render(&out);
  time_to_first_token.Render(&out);
  inter_token_latency.Render(&out);
  return out;
}

}  // namespace cellhouse::supervisor
