#include "supervisor/resources/gpu_share.h"

#include <cmath>
#include <cstdio>
#include <string>
#include <utility>

#include "base/strings.h"

namespace cellhouse::resources {

namespace {

constexpr uint64_t kMiB = 1ULL << 20;

std::string Fraction(uint32_t units) {
  char buf[16];
  static_cast<void>(
      std::snprintf(buf, sizeof(buf), "%.2f", static_cast<double>(units) / kComputeUnits));
  return buf;
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

Status ValidateGpuRequest(const GpuRequest& request) {
  if (!std::isfinite(request.compute) || request.compute <= 0 || request.compute > 1) {
    return Error("GPU share: compute " + std::to_string(request.compute) +
                 " is outside (0, 1] of one device");
  }
  if (request.memory_bytes < kMiB) {
    return Error("GPU share: device memory " + FormatBytes(request.memory_bytes) +
                 " is below 1 MiB");
  }
  return Ok();
}

uint32_t ComputeUnits(double fraction) {
  double units = std::round(fraction * kComputeUnits);
  if (units < 1) {
    return 1;
  }
  if (units > kComputeUnits) {
    return kComputeUnits;
  }
  return static_cast<uint32_t>(units);
}

GpuLedger::GpuLedger(GpuInventory inventory) : inventory_(std::move(inventory)) {}

Result<GpuGrant> GpuLedger::Reserve(const GpuRequest& request) {
  CH_RETURN_IF_ERROR(ValidateGpuRequest(request));
  if (inventory_.devices.empty()) {
    return Error("GPU share: this host has no GPU (" + inventory_.source + ")");
  }
  uint32_t units = ComputeUnits(request.compute);
  const GpuDevice* best = nullptr;
  uint32_t best_free = 0;
  for (const GpuDevice& d : inventory_.devices) {
    Usage used = UsageOf(d.index);
    uint32_t free_units = kComputeUnits - used.compute_units;
    uint64_t free_memory = d.memory_bytes - used.memory_bytes;
    if (units > free_units || request.memory_bytes > free_memory) {
      continue;
    }
    if (best == nullptr || free_units > best_free ||
        (free_units == best_free && d.index < best->index)) {
      best = &d;
      best_free = free_units;
    }
  }
  if (best == nullptr) {
    std::string message = "GPU share: no device has " + Fraction(units) + " of its compute and " +
                          FormatBytes(request.memory_bytes) + " of memory free (";
    for (size_t i = 0; i < inventory_.devices.size(); ++i) {
      const GpuDevice& d = inventory_.devices[i];
      Usage used = UsageOf(d.index);
      message += (i > 0 ? "; " : "") + std::string("GPU ") + std::to_string(d.index) + " " +
                 Quote(d.name) + ": " + Fraction(used.compute_units) + " and " +
                 FormatBytes(used.memory_bytes) + " of " + FormatBytes(d.memory_bytes) +
                 " committed";
    }
    return Error(message + ")");
  }
  Usage& used = usage_[best->index];
  used.compute_units += units;
  used.memory_bytes += request.memory_bytes;
  ++used.shares;
  return GpuGrant{
      .device_index = best->index, .compute_units = units, .memory_bytes = request.memory_bytes};
}

Status GpuLedger::Release(const GpuGrant& grant) {
  auto it = usage_.find(grant.device_index);
  if (it == usage_.end() || it->second.shares == 0 ||
      it->second.compute_units < grant.compute_units ||
      it->second.memory_bytes < grant.memory_bytes) {
    return Error("GPU ledger: releasing a share of GPU " + std::to_string(grant.device_index) +
                 " that was not booked");
  }
  it->second.compute_units -= grant.compute_units;
  it->second.memory_bytes -= grant.memory_bytes;
  if (--it->second.shares == 0) {
    usage_.erase(it);
  }
  return Ok();
}

GpuLedger::Usage GpuLedger::UsageOf(uint32_t device_index) const {
  auto it = usage_.find(device_index);
  return it == usage_.end() ? Usage{} : it->second;
}

WorkerGpuView MakeWorkerGpuView(const GpuDevice& device, const GpuGrant& grant,
                                std::span<const cgroup::DeviceMemoryRegion> dmem_regions,
                                const GpuViewOptions& options) {
  WorkerGpuView view;
  view.device_nodes = device.device_nodes;
  // MPS limits: the active thread percentage caps the SMs the client's kernels may use
  // (integer percent, rounded up, at least 1); the pinned memory limit caps its device
  // allocations. Both are read by the CUDA driver in the client when it connects to MPS.
  uint32_t percent = (grant.compute_units + 9) / 10;
  if (percent == 0) {
    percent = 1;
  }
  uint64_t mib = grant.memory_bytes / kMiB;
  if (mib == 0) {
    mib = 1;
  }
  view.env = {"CUDA_VISIBLE_DEVICES=" + device.uuid,
              "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=" + std::to_string(percent),
              "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=" + std::to_string(mib) + "M"};
  if (!options.mps_pipe_directory.empty()) {
    view.env.push_back("CUDA_MPS_PIPE_DIRECTORY=" + options.mps_pipe_directory);
    view.directories.push_back(options.mps_pipe_directory);
  }
  if (!device.pci_bus_id.empty()) {
    const cgroup::DeviceMemoryRegion* chosen = nullptr;
    int matches = 0;
    std::string needle = "/" + device.pci_bus_id + "/";
    for (const cgroup::DeviceMemoryRegion& r : dmem_regions) {
      if (r.name.find(needle) == std::string::npos) {
        continue;
      }
      ++matches;
      bool vram = EndsWith(r.name, "/vram0") || EndsWith(r.name, "/vidmem");
      if (chosen == nullptr || vram) {
        chosen = &r;
      }
    }
    bool chosen_is_vram = chosen != nullptr &&
                          (EndsWith(chosen->name, "/vram0") || EndsWith(chosen->name, "/vidmem"));
    if (chosen != nullptr && (chosen_is_vram || matches == 1)) {
      view.device_memory.push_back({.region = chosen->name, .bytes = grant.memory_bytes});
    }
  }
  return view;
}

}  // namespace cellhouse::resources
