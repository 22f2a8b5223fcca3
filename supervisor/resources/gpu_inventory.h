// Which GPUs this host has: discovered through NVML loaded at run time (dlopen of
// libnvidia-ml.so.1, so celld needs no NVIDIA library to build or run), or read from an
// inventory file (--gpu-inventory) on hosts and in tests without one. See GPU.md.
//
//   CH_ASSIGN_OR_RETURN(GpuInventory gpus, DiscoverGpus({.inventory_file = flags.gpu_inventory}));
//   log.info("GPU: {}", gpus.source);   // "no GPU: libnvidia-ml.so.1 not found (...)"
//
// Inventory file format: '#' starts a comment, blank lines are ignored, and each other line is
// one device with fields separated by '|' (white space around fields is ignored):
//
//   # index | uuid | name | memory | device nodes | PCI bus id (optional)
//   0 | GPU-8932f937-d72c-4106-c12f-20bd9faed9f6 | NVIDIA A100-SXM4-40GB | 40G |
//       /dev/nvidia0,/dev/nvidiactl,/dev/nvidia-uvm | 0000:03:00.0
//   (one line in the file; wrapped here)
//
//   index        the device's NVML / nvidia-smi index, 0..1023, unique
//   uuid         as `nvidia-smi -L` prints it; letters, digits and '-' only; unique
//   name         free text (no '|', no control characters)
//   memory       device memory: bytes, or with a K/M/G/T suffix (powers of 1024)
//   device nodes comma-separated absolute paths under /dev/ that a worker with a share of this
//                device gets bound into its mount namespace
//   PCI bus id   dddd:bb:dd.f, used to find the device's region in the cgroup v2 dmem
//                controller (dmem.capacity); without it no dmem limit is written
#ifndef CELLHOUSE_SUPERVISOR_RESOURCES_GPU_INVENTORY_H_
#define CELLHOUSE_SUPERVISOR_RESOURCES_GPU_INVENTORY_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace cellhouse::resources {

struct GpuDevice {
  uint32_t index = 0;
  std::string uuid;
  std::string name;
  uint64_t memory_bytes = 0;
  std::vector<std::string> device_nodes;
  std::string pci_bus_id;  // "0000:03:00.0" (lower case, 4-digit domain) or empty
};

struct GpuInventory {
  std::vector<GpuDevice> devices;
  // Where the list came from, or why there is none; for the start-up log and refusals.
  std::string source;

  const GpuDevice* Find(uint32_t index) const;
};

// Parses an inventory file's text; `source_name` names it in errors, which carry line numbers:
// "gpu inventory 'gpus.txt' line 3: memory '12X' is not a byte count such as 512M or 2G".
Result<GpuInventory> ParseGpuInventory(std::string_view text, std::string_view source_name);
Result<GpuInventory> LoadGpuInventoryFile(const std::string& path);

// The slice of NVML (nvml.h) discovery needs, as function pointers, so tests can pass a fake
// table. Signatures and struct layouts follow NVIDIA's nvml.h.
struct NvmlDeviceOpaque;
struct NvmlMemory {  // nvmlMemory_t
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};
struct NvmlPciInfo {  // nvmlPciInfo_t
  char bus_id_legacy[16];
  unsigned int domain;
  unsigned int bus;
  unsigned int device;
  unsigned int pci_device_id;
  unsigned int pci_sub_system_id;
  char bus_id[32];  // "00000000:03:00.0"
};
struct NvmlApi {
  using Return = int;  // nvmlReturn_t; 0 is NVML_SUCCESS
  using Device = NvmlDeviceOpaque*;
  Return (*init)() = nullptr;                                  // nvmlInit_v2
  Return (*shutdown)() = nullptr;                              // nvmlShutdown
  Return (*device_count)(unsigned int*) = nullptr;             // nvmlDeviceGetCount_v2
  Return (*device_by_index)(unsigned int, Device*) = nullptr;  // nvmlDeviceGetHandleByIndex_v2
  Return (*uuid)(Device, char*, unsigned int) = nullptr;       // nvmlDeviceGetUUID
  Return (*name)(Device, char*, unsigned int) = nullptr;       // nvmlDeviceGetName
  Return (*memory_info)(Device, NvmlMemory*) = nullptr;        // nvmlDeviceGetMemoryInfo
  Return (*minor_number)(Device, unsigned int*) = nullptr;     // nvmlDeviceGetMinorNumber
  Return (*pci_info)(Device, NvmlPciInfo*) = nullptr;          // nvmlDeviceGetPciInfo_v3
  const char* (*error_string)(Return) = nullptr;               // nvmlErrorString
};

// Lists the devices through `api`: init, query each device, shutdown. Device nodes are
// /dev/nvidia<minor>, /dev/nvidiactl and /dev/nvidia-uvm, each kept only if `node_exists` says
// it is there. An init failure (no driver loaded) is "no GPU" with the reason in `source`;
// a failure after a successful init is an error.
Result<GpuInventory> DiscoverWithNvml(const NvmlApi& api,
                                      const std::function<bool(const std::string&)>& node_exists);

struct GpuDiscoveryOptions {
  std::string inventory_file;  // --gpu-inventory; when set NVML is not tried
  std::string nvml_library = "libnvidia-ml.so.1";
};

// The inventory file when given (a malformed one is an error: the admin asked for it);
// otherwise NVML when it loads; otherwise an empty inventory whose source says why.
Result<GpuInventory> DiscoverGpus(const GpuDiscoveryOptions& options);

}  // namespace cellhouse::resources

#endif  // CELLHOUSE_SUPERVISOR_RESOURCES_GPU_INVENTORY_H_
