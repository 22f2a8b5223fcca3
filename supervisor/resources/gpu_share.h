// GPU shares: a per-device ledger that never lets the shares on one device add up past all of
// its compute or all of its memory, and what a worker holding a share is given (device nodes,
// CUDA/MPS environment, a dmem.max limit). See GPU.md for who enforces what.
//
//   GpuLedger ledger(std::move(inventory));
//   CH_ASSIGN_OR_RETURN(GpuGrant grant, ledger.Reserve({.compute = 0.25, .memory_bytes = 4 <<
//   30})); WorkerGpuView view = MakeWorkerGpuView(*ledger.inventory().Find(grant.device_index),
//   grant,
//                                          driver->DeviceMemoryRegions().value(), {});
//   // view.device_nodes -> SandboxSpec.device_nodes, view.env -> SandboxSpec.env,
//   // view.device_memory -> cgroup::Limits.device_memory
//   ...
//   CH_RETURN_IF_ERROR(ledger.Release(grant));
#ifndef CELLHOUSE_SUPERVISOR_RESOURCES_GPU_SHARE_H_
#define CELLHOUSE_SUPERVISOR_RESOURCES_GPU_SHARE_H_

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "supervisor/cgroup/driver.h"
#include "supervisor/cgroup/limits.h"
#include "supervisor/resources/gpu_inventory.h"

namespace cellhouse::resources {

// A policy's gpu_share.
struct GpuRequest {
  double compute = 0;         // fraction of one device's compute, in (0, 1]
  uint64_t memory_bytes = 0;  // device memory, >= 1 MiB
};

// Compute is kept in thousandths of a device so that shares add up exactly.
inline constexpr uint32_t kComputeUnits = 1000;

struct GpuGrant {
  uint32_t device_index = 0;   // GpuDevice::index
  uint32_t compute_units = 0;  // 1..1000 thousandths
  uint64_t memory_bytes = 0;
};

class GpuLedger {
 public:
  explicit GpuLedger(GpuInventory inventory);

  const GpuInventory& inventory() const { return inventory_; }
  bool has_gpu() const { return !inventory_.devices.empty(); }

  // Books `request` on the device with the most compute left among those where both compute
  // and memory fit (ties: the lowest index). The error is the refusal, one sentence:
  // "GPU share: no device has 0.50 of its compute and 8.0 GiB free (GPU 0 'A100': 0.75 and
  // 30.0 GiB of 40.0 GiB committed)".
  Result<GpuGrant> Reserve(const GpuRequest& request);
  // Returns a grant's share; an unknown device or more than was booked is an error.
  Status Release(const GpuGrant& grant);

  struct Usage {
    uint32_t compute_units = 0;
    uint64_t memory_bytes = 0;
    uint32_t shares = 0;
  };
  Usage UsageOf(uint32_t device_index) const;

 private:
  GpuInventory inventory_;
  std::map<uint32_t, Usage> usage_;  // by device index
};

// Checks a request's ranges; the error names the field.
Status ValidateGpuRequest(const GpuRequest& request);
// 0.25 -> 250; to the nearest thousandth (at least 1), so that three shares of 1/3 fit on one
// device.
uint32_t ComputeUnits(double fraction);

struct GpuViewOptions {
  // Where the MPS control daemon's pipes live (CUDA_MPS_PIPE_DIRECTORY); bound into the worker
  // and named in its environment. Empty: MPS's default, /tmp/nvidia-mps.
  std::string mps_pipe_directory;
};

// What a worker with a share gets. A worker without a share gets none of it: no device node,
// no CUDA variable, no dmem limit.
struct WorkerGpuView {
  // Bound into the worker's otherwise empty mount namespace.
  std::vector<std::string> device_nodes;
  // Directories to bind as well (the MPS pipe directory).
  std::vector<std::string> directories;
  // "NAME=value" entries:
  //   CUDA_VISIBLE_DEVICES=<uuid>            only this device, by UUID (unambiguous under MPS)
  //   CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=<p>  the compute share, in percent of the SMs
  //   CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=<N>M  the memory share; ordinal 0 because the worker
  //                                          sees exactly one device
  //   CUDA_MPS_PIPE_DIRECTORY=<dir>          when configured
  std::vector<std::string> env;
  // dmem.max for the session cgroup, when the device's region is in `dmem_regions`.
  std::vector<cgroup::DeviceMemoryLimit> device_memory;
};

// `dmem_regions` is Driver::DeviceMemoryRegions() (empty without the dmem controller). The
// device's region is the one whose name holds its PCI bus id ("drm/0000:03:00.0/vram0",
// "nvidia/0000:03:00.0/vidmem"), preferring VRAM when a device has several.
WorkerGpuView MakeWorkerGpuView(const GpuDevice& device, const GpuGrant& grant,
                                std::span<const cgroup::DeviceMemoryRegion> dmem_regions,
                                const GpuViewOptions& options);

}  // namespace cellhouse::resources

#endif  // CELLHOUSE_SUPERVISOR_RESOURCES_GPU_SHARE_H_
