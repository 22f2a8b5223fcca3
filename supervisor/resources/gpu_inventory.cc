#include "supervisor/resources/gpu_inventory.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <memory>
#include <set>

#include "base/io.h"
#include "base/strings.h"

namespace cellhouse::resources {

namespace {

constexpr uint32_t kMaxGpuIndex = 1023;
constexpr size_t kMaxInventoryBytes = 1 << 20;
constexpr int kNvmlSuccess = 0;
constexpr unsigned int kNvmlStringBuffer = 96;  // NVML_DEVICE_{NAME,UUID}_V2_BUFFER_SIZE

bool IsHex(char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }

// "dddd:bb:dd.f", hex.
bool IsPciBusId(std::string_view s) {
  if (s.size() != 12 || s[4] != ':' || s[7] != ':' || s[10] != '.') {
    return false;
  }
  for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9, 11}) {
    if (!IsHex(s[i])) {
      return false;
    }
  }
  return true;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

Status CheckDeviceNode(std::string_view node) {
  if (!StartsWith(node, "/dev/") || node.size() == 5) {
    return Error("must be a path under /dev/");
  }
  for (std::string_view part : Split(node.substr(1), '/')) {
    if (part.empty() || part == "." || part == "..") {
      return Error("has an empty, . or .. part");
    }
  }
  for (char c : node) {
    if (std::isspace(static_cast<unsigned char>(c)) ||
        std::iscntrl(static_cast<unsigned char>(c))) {
      return Error("contains white space or a control character");
    }
  }
  return Ok();
}

Result<GpuDevice> ParseDeviceLine(std::string_view line) {
  std::vector<std::string_view> fields = Split(line, '|');
  if (fields.size() != 5 && fields.size() != 6) {
    return Error(
        "expected 5 or 6 fields separated by '|' (index | uuid | name | memory | "
        "device nodes [| PCI bus id]), found " +
        std::to_string(fields.size()));
  }
  for (std::string_view& f : fields) {
    f = Trim(f);
  }
  GpuDevice d;
  CH_ASSIGN_OR_RETURN(uint64_t index, ParseUint64(fields[0], "index"));
  if (index > kMaxGpuIndex) {
    return Error("index " + std::to_string(index) + " is above 1023");
  }
  d.index = static_cast<uint32_t>(index);

  if (fields[1].empty()) {
    return Error("uuid is empty");
  }
  for (char c : fields[1]) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') {
      return Error("uuid " + Quote(fields[1]) + " may hold only letters, digits and '-'");
    }
  }
  d.uuid = std::string(fields[1]);

  if (fields[2].empty()) {
    return Error("name is empty");
  }
  for (char c : fields[2]) {
    if (std::iscntrl(static_cast<unsigned char>(c))) {
      return Error("name has a control character");
    }
  }
  d.name = std::string(fields[2]);

  CH_ASSIGN_OR_RETURN(d.memory_bytes, ParseByteSize(fields[3], "memory"));
  if (d.memory_bytes == 0) {
    return Error("memory is 0");
  }

  for (std::string_view node : Split(fields[4], ',')) {
    node = Trim(node);
    Status ok = CheckDeviceNode(node);
    if (!ok) {
      return Error("device node " + Quote(node) + " " + ok.error().message());
    }
    d.device_nodes.emplace_back(node);
  }

  if (fields.size() == 6 && !fields[5].empty()) {
    if (!IsPciBusId(fields[5])) {
      return Error("PCI bus id " + Quote(fields[5]) + " is not of the form 0000:03:00.0");
    }
    d.pci_bus_id = Lower(fields[5]);
  }
  return d;
}

std::string NvmlError(const NvmlApi& api, NvmlApi::Return r) {
  const char* text = api.error_string != nullptr ? api.error_string(r) : nullptr;
  return text != nullptr ? std::string(text) : "NVML error " + std::to_string(r);
}

// "00000000:3B:00.0" -> "0000:3b:00.0" (sysfs spelling: 4-digit domain, lower case).
std::string SysfsBusId(const char* nvml_bus_id, size_t size) {
  std::string_view id(nvml_bus_id, strnlen(nvml_bus_id, size));
  if (id.size() > 12) {
    id.remove_prefix(id.size() - 12);
  }
  std::string out = Lower(id);
  return IsPciBusId(out) ? out : "";
}

Result<GpuDevice> QueryNvmlDevice(const NvmlApi& api, unsigned int i,
                                  const std::function<bool(const std::string&)>& node_exists) {
  auto check = [&api, i](NvmlApi::Return r, const char* what) -> Status {
    if (r == kNvmlSuccess) {
      return Ok();
    }
    return Error("NVML " + std::string(what) + " of GPU " + std::to_string(i) + ": " +
                 NvmlError(api, r));
  };
  NvmlApi::Device dev = nullptr;
  CH_RETURN_IF_ERROR(check(api.device_by_index(i, &dev), "nvmlDeviceGetHandleByIndex"));
  GpuDevice d;
  d.index = i;
  char buf[kNvmlStringBuffer] = {};
  CH_RETURN_IF_ERROR(check(api.uuid(dev, buf, sizeof(buf)), "nvmlDeviceGetUUID"));
  d.uuid.assign(buf, strnlen(buf, sizeof(buf)));
  std::memset(buf, 0, sizeof(buf));
  CH_RETURN_IF_ERROR(check(api.name(dev, buf, sizeof(buf)), "nvmlDeviceGetName"));
  d.name.assign(buf, strnlen(buf, sizeof(buf)));
  NvmlMemory memory{};
  CH_RETURN_IF_ERROR(check(api.memory_info(dev, &memory), "nvmlDeviceGetMemoryInfo"));
  d.memory_bytes = memory.total;
  unsigned int minor = 0;
  CH_RETURN_IF_ERROR(check(api.minor_number(dev, &minor), "nvmlDeviceGetMinorNumber"));
  for (const std::string& node : {"/dev/nvidia" + std::to_string(minor),
                                  std::string("/dev/nvidiactl"), std::string("/dev/nvidia-uvm")}) {
    if (node_exists(node)) {
      d.device_nodes.push_back(node);
    }
  }
  if (api.pci_info != nullptr) {
    NvmlPciInfo pci{};
    if (api.pci_info(dev, &pci) == kNvmlSuccess) {
      d.pci_bus_id = SysfsBusId(pci.bus_id, sizeof(pci.bus_id));
    }
  }
  return d;
}

// dlopen'd NVML, closed on scope exit. dlerror() is not thread-safe; celld is single-threaded.
class NvmlLibrary {
 public:
  static Result<std::unique_ptr<NvmlLibrary>> Open(const std::string& soname) {
    void* handle = ::dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* why = ::dlerror();  // NOLINT(concurrency-mt-unsafe): single-threaded celld
      return Error(soname + " could not be loaded (" + (why ? why : "unknown reason") + ")");
    }
    auto lib = std::unique_ptr<NvmlLibrary>(new NvmlLibrary(handle));
    CH_RETURN_IF_ERROR(lib->Bind(soname));
    return lib;
  }
  NvmlLibrary(const NvmlLibrary&) = delete;
  NvmlLibrary& operator=(const NvmlLibrary&) = delete;
  ~NvmlLibrary() { ::dlclose(handle_); }
  const NvmlApi& Api() const { return api_; }

 private:
  explicit NvmlLibrary(void* handle) : handle_(handle) {}

  template <typename F>
  Status Sym(const std::string& soname, const char* name, F* out, bool required = true) {
    void* sym = ::dlsym(handle_, name);
    if (sym == nullptr && required) {
      return Error(soname + " lacks " + name + "; the NVIDIA driver is too old");
    }
    *out = reinterpret_cast<F>(sym);  // NOLINT: dlsym's documented use
    return Ok();
  }

  Status Bind(const std::string& soname) {
    CH_RETURN_IF_ERROR(Sym(soname, "nvmlInit_v2", &api_.init));
    CH_RETURN_IF_ERROR(Sym(soname, "nvmlShutdown", &api_.shutdown));
    CH_RETURN_IF_ERROR(Sym(soname, "nvmlDeviceGetCount_v2", &api_.device_count));
    CH_RETURN_IF_ERROR(Sym(soname, "nvmlDeviceGetHandleByIndex_v2", &api_.device_by_index));
    CH_RETURN_IF_ERROR(Sym(soname, "nvmlDeviceGetUUID", &api_.uuid));
    CH_RETURN_IF_ERROR(Sym(soname, "nvmlDeviceGetName", &api_.name));
    CH_RETURN_IF_ERROR(Sym(soname, "nvmlDeviceGetMemoryInfo", &api_.memory_info));
    CH_RETURN_IF_ERROR(Sym(soname, "nvmlDeviceGetMinorNumber", &api_.minor_number));
    CH_RETURN_IF_ERROR(Sym(soname, "nvmlDeviceGetPciInfo_v3", &api_.pci_info, false));
    CH_RETURN_IF_ERROR(Sym(soname, "nvmlErrorString", &api_.error_string, false));
    return Ok();
  }

  void* handle_;
  NvmlApi api_;
};

}  // namespace

const GpuDevice* GpuInventory::Find(uint32_t index) const {
  for (const GpuDevice& d : devices) {
    if (d.index == index) {
      return &d;
    }
  }
  return nullptr;
}

Result<GpuInventory> ParseGpuInventory(std::string_view text, std::string_view source_name) {
  GpuInventory inventory;
  std::set<uint32_t> indices;
  std::set<std::string> uuids;
  int line_number = 0;
  for (std::string_view line : Split(text, '\n')) {
    ++line_number;
    size_t hash = line.find('#');
    if (hash != std::string_view::npos) {
      line = line.substr(0, hash);
    }
    if (Trim(line).empty()) {
      continue;
    }
    auto where = [&] {
      return "gpu inventory '" + std::string(source_name) + "' line " +
             std::to_string(line_number) + ": ";
    };
    Result<GpuDevice> device = ParseDeviceLine(line);
    if (!device) {
      return Error(where() + device.error().message());
    }
    if (!indices.insert(device->index).second) {
      return Error(where() + "index " + std::to_string(device->index) + " appears twice");
    }
    if (!uuids.insert(device->uuid).second) {
      return Error(where() + "uuid " + Quote(device->uuid) + " appears twice");
    }
    inventory.devices.push_back(std::move(*device));
  }
  inventory.source = "inventory file '" + std::string(source_name) +
                     "': " + std::to_string(inventory.devices.size()) + " device(s)";
  return inventory;
}

Result<GpuInventory> LoadGpuInventoryFile(const std::string& path) {
  Result<std::string> text = ReadFileToString(path, kMaxInventoryBytes);
  if (!text) {
    return std::move(text).error().Context("reading the gpu inventory");
  }
  return ParseGpuInventory(*text, path);
}

Result<GpuInventory> DiscoverWithNvml(const NvmlApi& api,
                                      const std::function<bool(const std::string&)>& node_exists) {
  GpuInventory inventory;
  NvmlApi::Return r = api.init();
  if (r != kNvmlSuccess) {
    inventory.source = "no GPU: NVML did not initialise (" + NvmlError(api, r) + ")";
    return inventory;
  }
  unsigned int count = 0;
  Result<GpuInventory> out = [&]() -> Result<GpuInventory> {
    NvmlApi::Return c = api.device_count(&count);
    if (c != kNvmlSuccess) {
      return Error("NVML nvmlDeviceGetCount: " + NvmlError(api, c));
    }
    for (unsigned int i = 0; i < count; ++i) {
      CH_ASSIGN_OR_RETURN(GpuDevice d, QueryNvmlDevice(api, i, node_exists));
      inventory.devices.push_back(std::move(d));
    }
    inventory.source = "NVML: " + std::to_string(count) + " device(s)";
    return inventory;
  }();
  // Discovery happens once at start-up; NVML is not kept loaded.
  static_cast<void>(api.shutdown());
  return out;
}

Result<GpuInventory> DiscoverGpus(const GpuDiscoveryOptions& options) {
  if (!options.inventory_file.empty()) {
    return LoadGpuInventoryFile(options.inventory_file);
  }
  Result<std::unique_ptr<NvmlLibrary>> nvml = NvmlLibrary::Open(options.nvml_library);
  if (!nvml) {
    GpuInventory none;
    none.source = "no GPU: " + nvml.error().message() + " and no --gpu-inventory was given";
    return none;
  }
  return DiscoverWithNvml(
      (*nvml)->Api(), [](const std::string& node) { return ::access(node.c_str(), F_OK) == 0; });
}

}  // namespace cellhouse::resources
