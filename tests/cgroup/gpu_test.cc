// GPU shares without a GPU: inventory files (good and malformed, with line numbers), NVML
// discovery through a fake function table, the per-device ledger, and what a worker with or
// without a share is given, including the dmem.max write on a fake cgroup v2 host.
#include <cstring>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/io.h"
#include "supervisor/cgroup/driver.h"
#include "supervisor/resources/gpu_inventory.h"
#include "supervisor/resources/gpu_share.h"
#include "tests/cgroup/fake_cgroupfs.h"
#include "tests/cgroup/fake_hosts.h"
#include "tests/support/test_env.h"

namespace cellhouse::resources {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr const char* kTwoGpus =
    "# index | uuid | name | memory | device nodes | PCI bus id\n"
    "0 | GPU-8932f937-d72c-4106-c12f-20bd9faed9f6 | NVIDIA A100-SXM4-40GB | 40G | "
    "/dev/nvidia0,/dev/nvidiactl,/dev/nvidia-uvm | 0000:03:00.0\n"
    "\n"
    "  1|GPU-11112222|Small card|8589934592|/dev/nvidia1, /dev/nvidiactl   # no PCI id\n";

GpuInventory TwoGpus() {
  auto inv = ParseGpuInventory(kTwoGpus, "test");
  EXPECT_TRUE(inv) << inv.error().message();
  return inv ? *inv : GpuInventory{};
}

TEST(GpuInventoryTest, ParsesTheDocumentedFormat) {
  GpuInventory inv = TwoGpus();
  ASSERT_EQ(inv.devices.size(), 2u);
  const GpuDevice& a = inv.devices[0];
  EXPECT_EQ(a.index, 0u);
  EXPECT_EQ(a.uuid, "GPU-8932f937-d72c-4106-c12f-20bd9faed9f6");
  EXPECT_EQ(a.name, "NVIDIA A100-SXM4-40GB");
  EXPECT_EQ(a.memory_bytes, 40ULL << 30);
  EXPECT_THAT(a.device_nodes, ElementsAre("/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm"));
  EXPECT_EQ(a.pci_bus_id, "0000:03:00.0");
  const GpuDevice& b = inv.devices[1];
  EXPECT_EQ(b.index, 1u);
  EXPECT_EQ(b.memory_bytes, 8ULL << 30);
  EXPECT_THAT(b.device_nodes, ElementsAre("/dev/nvidia1", "/dev/nvidiactl"));
  EXPECT_EQ(b.pci_bus_id, "");
  EXPECT_EQ(inv.source, "inventory file 'test': 2 device(s)");
  EXPECT_EQ(inv.Find(1), &inv.devices[1]);
  EXPECT_EQ(inv.Find(7), nullptr);
}

TEST(GpuInventoryTest, MalformedLinesAreRefusedWithTheirLineNumber) {
  const std::string good = "0 | GPU-a | A | 1G | /dev/nvidia0\n";
  struct Case {
    std::string second_line;
    const char* message;
  };
  const Case cases[] = {
      {"1 | GPU-b | B | 1G", "line 2: expected 5 or 6 fields"},
      {"x | GPU-b | B | 1G | /dev/nvidia1", "line 2: index: 'x' is not a non-negative integer"},
      {"1024 | GPU-b | B | 1G | /dev/nvidia1", "line 2: index 1024 is above 1023"},
      {"0 | GPU-b | B | 1G | /dev/nvidia1", "line 2: index 0 appears twice"},
      {"1 | GPU-a | B | 1G | /dev/nvidia1", "line 2: uuid 'GPU-a' appears twice"},
      {"1 | GPU b | B | 1G | /dev/nvidia1", "line 2: uuid 'GPU b' may hold only"},
      {"1 |  | B | 1G | /dev/nvidia1", "line 2: uuid is empty"},
      {"1 | GPU-b |  | 1G | /dev/nvidia1", "line 2: name is empty"},
      {"1 | GPU-b | B | 12X | /dev/nvidia1", "line 2: memory: '12X' is not a byte count"},
      {"1 | GPU-b | B | 0 | /dev/nvidia1", "line 2: memory is 0"},
      {"1 | GPU-b | B | 1G | nvidia1", "line 2: device node 'nvidia1' must be a path under /dev/"},
      {"1 | GPU-b | B | 1G | /dev/../etc/shadow", "line 2: device node '/dev/../etc/shadow' has"},
      {"1 | GPU-b | B | 1G | ", "line 2: device node '' must be a path under /dev/"},
      {"1 | GPU-b | B | 1G | /dev/nvidia1 | 3:00.0", "line 2: PCI bus id '3:00.0' is not"},
  };
  for (const Case& c : cases) {
    auto inv = ParseGpuInventory(good + c.second_line + "\n", "gpus.txt");
    ASSERT_FALSE(inv) << c.second_line;
    EXPECT_THAT(inv.error().message(),
                HasSubstr("gpu inventory 'gpus.txt' " + std::string(c.message)))
        << c.second_line;
  }
}

TEST(GpuInventoryTest, FilesAndDiscoveryOptions) {
  cellhouse::testing::TempDir dir;
  ASSERT_TRUE(CreateFileWithContent(dir.File("gpus"), kTwoGpus, 0644));
  auto from_file = DiscoverGpus({.inventory_file = dir.File("gpus")});
  ASSERT_TRUE(from_file) << from_file.error().message();
  EXPECT_EQ(from_file->devices.size(), 2u);
  ASSERT_TRUE(CreateFileWithContent(dir.File("bad"), "0 | GPU-a | A | 1G\n", 0644));
  auto bad = DiscoverGpus({.inventory_file = dir.File("bad")});
  ASSERT_FALSE(bad) << "a malformed inventory the admin asked for is an error";
  EXPECT_THAT(bad.error().message(), HasSubstr("line 1"));
  EXPECT_FALSE(DiscoverGpus({.inventory_file = dir.File("missing")}));
  // No NVML here: that means "no GPU", with the reason.
  auto none = DiscoverGpus({.nvml_library = "libcellhouse-no-such-nvml.so.1"});
  ASSERT_TRUE(none) << none.error().message();
  EXPECT_TRUE(none->devices.empty());
  EXPECT_THAT(none->source, HasSubstr("no GPU: libcellhouse-no-such-nvml.so.1 could not be "
                                      "loaded"));
  EXPECT_THAT(none->source, HasSubstr("and no --gpu-inventory was given"));
}

// A fake NVML: two devices, or a failing init.
struct FakeNvmlDevice {
  const char* uuid;
  const char* name;
  unsigned long long memory;
  unsigned int minor;
  const char* bus_id;
};
constexpr FakeNvmlDevice kFakeDevices[] = {
    {"GPU-0000aaaa", "Fake H100", 80ULL << 30, 0, "00000000:3B:00.0"},
    {"GPU-1111bbbb", "Fake L4", 24ULL << 30, 1, "00000000:5E:00.0"},
};

NvmlApi FakeNvml(bool init_fails) {
  NvmlApi api;
  api.init = init_fails ? +[]() { return 9; } : +[]() { return 0; };
  api.shutdown = +[]() { return 0; };
  api.device_count = +[](unsigned int* n) {
    *n = 2;
    return 0;
  };
  api.device_by_index = +[](unsigned int i, NvmlApi::Device* d) {
    if (i >= 2) {
      return 2;
    }
    // The handle is opaque to the caller; the fake points it at its own table.
    *d = reinterpret_cast<NvmlApi::Device>(const_cast<FakeNvmlDevice*>(&kFakeDevices[i]));
    return 0;
  };
  api.uuid = +[](NvmlApi::Device d, char* buf, unsigned int len) {
    std::strncpy(buf, reinterpret_cast<FakeNvmlDevice*>(d)->uuid, len - 1);
    return 0;
  };
  api.name = +[](NvmlApi::Device d, char* buf, unsigned int len) {
    std::strncpy(buf, reinterpret_cast<FakeNvmlDevice*>(d)->name, len - 1);
    return 0;
  };
  api.memory_info = +[](NvmlApi::Device d, NvmlMemory* m) {
    m->total = reinterpret_cast<FakeNvmlDevice*>(d)->memory;
    return 0;
  };
  api.minor_number = +[](NvmlApi::Device d, unsigned int* minor) {
    *minor = reinterpret_cast<FakeNvmlDevice*>(d)->minor;
    return 0;
  };
  api.pci_info = +[](NvmlApi::Device d, NvmlPciInfo* pci) {
    std::strncpy(pci->bus_id, reinterpret_cast<FakeNvmlDevice*>(d)->bus_id,
                 sizeof(pci->bus_id) - 1);
    return 0;
  };
  api.error_string =
      +[](NvmlApi::Return r) { return r == 9 ? "Driver Not Loaded" : "Unknown Error"; };
  return api;
}

TEST(NvmlDiscoveryTest, ListsDevicesFromTheFunctionTable) {
  auto inv = DiscoverWithNvml(FakeNvml(false), [](const std::string& node) {
    return node != "/dev/nvidia-uvm";  // pretend nvidia-uvm is not loaded
  });
  ASSERT_TRUE(inv) << inv.error().message();
  ASSERT_EQ(inv->devices.size(), 2u);
  EXPECT_EQ(inv->source, "NVML: 2 device(s)");
  const GpuDevice& l4 = inv->devices[1];
  EXPECT_EQ(l4.index, 1u);
  EXPECT_EQ(l4.uuid, "GPU-1111bbbb");
  EXPECT_EQ(l4.name, "Fake L4");
  EXPECT_EQ(l4.memory_bytes, 24ULL << 30);
  EXPECT_THAT(l4.device_nodes, ElementsAre("/dev/nvidia1", "/dev/nvidiactl"));
  EXPECT_EQ(l4.pci_bus_id, "0000:5e:00.0");
}

TEST(NvmlDiscoveryTest, InitFailureMeansNoGpuWithTheReason) {
  auto inv = DiscoverWithNvml(FakeNvml(true), [](const std::string&) { return true; });
  ASSERT_TRUE(inv);
  EXPECT_TRUE(inv->devices.empty());
  EXPECT_EQ(inv->source, "no GPU: NVML did not initialise (Driver Not Loaded)");
}

TEST(GpuLedgerTest, SharesOnADeviceNeverPassOneOrItsMemory) {
  GpuLedger ledger(TwoGpus());  // 40 GiB and 8 GiB
  std::vector<GpuGrant> grants;
  // Quarter shares with 4 GiB: the big device takes four, the small one two (memory-bound).
  for (int i = 0; i < 20; ++i) {
    auto g = ledger.Reserve({.compute = 0.25, .memory_bytes = 4ULL << 30});
    if (!g) {
      EXPECT_THAT(g.error().message(), HasSubstr("GPU share: no device has 0.25 of its compute"));
      continue;
    }
    grants.push_back(*g);
  }
  EXPECT_EQ(grants.size(), 6u);
  EXPECT_EQ(ledger.UsageOf(0).compute_units, kComputeUnits);
  EXPECT_EQ(ledger.UsageOf(0).shares, 4u);
  EXPECT_EQ(ledger.UsageOf(1).memory_bytes, 8ULL << 30);
  EXPECT_EQ(ledger.UsageOf(1).compute_units, 500u);
  // Three thirds fit on each device, a seventh third on neither.
  GpuLedger thirds(TwoGpus());
  int fitted = 0;
  for (int i = 0; i < 7; ++i) {
    fitted += thirds.Reserve({.compute = 1.0 / 3, .memory_bytes = 1 << 20}) ? 1 : 0;
  }
  EXPECT_EQ(fitted, 6);
  EXPECT_EQ(thirds.UsageOf(0).compute_units, 999u);
  EXPECT_EQ(thirds.UsageOf(1).compute_units, 999u);
}

TEST(GpuLedgerTest, PicksTheDeviceWithMostComputeLeftAndReleases) {
  GpuLedger ledger(TwoGpus());
  auto first = ledger.Reserve({.compute = 0.5, .memory_bytes = 1ULL << 30});
  ASSERT_TRUE(first);
  EXPECT_EQ(first->device_index, 0u) << "tie: lowest index";
  auto second = ledger.Reserve({.compute = 0.5, .memory_bytes = 1ULL << 30});
  ASSERT_TRUE(second);
  EXPECT_EQ(second->device_index, 1u) << "device 1 has more compute left";
  auto big = ledger.Reserve({.compute = 0.1, .memory_bytes = 20ULL << 30});
  ASSERT_TRUE(big);
  EXPECT_EQ(big->device_index, 0u) << "only device 0 has the memory";
  ASSERT_TRUE(ledger.Release(*second));
  EXPECT_EQ(ledger.UsageOf(1).shares, 0u);
  EXPECT_FALSE(ledger.Release(*second)) << "released twice";
  EXPECT_FALSE(ledger.Release({.device_index = 9, .compute_units = 1, .memory_bytes = 1}));
}

TEST(GpuLedgerTest, BadRequestsAndNoGpu) {
  GpuLedger ledger(TwoGpus());
  EXPECT_FALSE(ledger.Reserve({.compute = 0, .memory_bytes = 1 << 20}));
  EXPECT_FALSE(ledger.Reserve({.compute = 1.01, .memory_bytes = 1 << 20}));
  EXPECT_FALSE(ledger.Reserve({.compute = 0.5, .memory_bytes = 1024}));
  GpuLedger none(GpuInventory{.devices = {}, .source = "no GPU: test"});
  auto g = none.Reserve({.compute = 0.5, .memory_bytes = 1 << 20});
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().message(), "GPU share: this host has no GPU (no GPU: test)");
  EXPECT_EQ(ComputeUnits(0.25), 250u);
  EXPECT_EQ(ComputeUnits(1.0 / 3), 333u);
  EXPECT_EQ(ComputeUnits(0.0001), 1u);
}

TEST(WorkerGpuViewTest, AShareGetsItsDeviceNodesEnvironmentAndDmemLimit) {
  GpuInventory inv = TwoGpus();
  GpuGrant grant{.device_index = 0, .compute_units = 250, .memory_bytes = 10ULL << 30};
  std::vector<cgroup::DeviceMemoryRegion> regions = {
      {.name = "drm/0000:03:00.0/stolen", .capacity_bytes = 1 << 20},
      {.name = "drm/0000:03:00.0/vram0", .capacity_bytes = 40ULL << 30},
      {.name = "drm/0000:04:00.0/vram0", .capacity_bytes = 40ULL << 30},
  };
  WorkerGpuView view =
      MakeWorkerGpuView(inv.devices[0], grant, regions, {.mps_pipe_directory = "/run/mps"});
  EXPECT_THAT(view.device_nodes, ElementsAre("/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm"));
  EXPECT_THAT(view.directories, ElementsAre("/run/mps"));
  EXPECT_THAT(view.env, ElementsAre("CUDA_VISIBLE_DEVICES=GPU-8932f937-d72c-4106-c12f-20bd9faed9f6",
                                    "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=25",
                                    "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=10240M",
                                    "CUDA_MPS_PIPE_DIRECTORY=/run/mps"));
  ASSERT_EQ(view.device_memory.size(), 1u);
  EXPECT_EQ(view.device_memory[0].region, "drm/0000:03:00.0/vram0");
  EXPECT_EQ(view.device_memory[0].bytes, 10ULL << 30);
}

TEST(WorkerGpuViewTest, NoDmemRegionOrNoPciIdMeansNoDmemLimit) {
  GpuInventory inv = TwoGpus();
  GpuGrant grant{.device_index = 1, .compute_units = 1, .memory_bytes = 1536ULL << 20};
  std::vector<cgroup::DeviceMemoryRegion> regions = {{.name = "drm/0000:03:00.0/vram0"}};
  WorkerGpuView view = MakeWorkerGpuView(inv.devices[1], grant, regions, {});
  EXPECT_TRUE(view.device_memory.empty()) << "device 1 has no PCI id in the inventory";
  EXPECT_THAT(view.env, ElementsAre("CUDA_VISIBLE_DEVICES=GPU-11112222",
                                    "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=1",
                                    "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=1536M"));
  EXPECT_TRUE(view.directories.empty());
  WorkerGpuView no_dmem = MakeWorkerGpuView(inv.devices[0], grant, {}, {});
  EXPECT_TRUE(no_dmem.device_memory.empty()) << "a kernel without dmem";
}

TEST(WorkerGpuViewTest, AWorkerWithoutAShareGetsNothing) {
  WorkerGpuView none;  // what celld uses for a policy without gpu_share
  EXPECT_TRUE(none.device_nodes.empty());
  EXPECT_TRUE(none.env.empty());
  EXPECT_TRUE(none.directories.empty());
  EXPECT_TRUE(none.device_memory.empty());
}

TEST(WorkerGpuViewTest, TheDmemLimitIsWrittenToTheSessionCgroup) {
  // A cgroup v2 host whose kernel has the dmem controller (the fake offers the region
  // drm/0000:03:00.0/vram0, 8 GiB, in dmem.capacity).
  cgroup::testing::FakeCgroupFs fake;
  cgroup::testing::PureV2Host(fake, {"cpu", "memory", "pids", "dmem"});
  auto driver = cgroup::DetectDriver(fake, fake, {});
  ASSERT_TRUE(driver) << driver.error().message();
  ASSERT_TRUE((*driver)->Setup());
  auto regions = (*driver)->DeviceMemoryRegions();
  ASSERT_TRUE(regions);

  GpuLedger ledger(TwoGpus());
  auto grant = ledger.Reserve({.compute = 0.5, .memory_bytes = 2ULL << 30});
  ASSERT_TRUE(grant);
  WorkerGpuView view =
      MakeWorkerGpuView(*ledger.inventory().Find(grant->device_index), *grant, *regions, {});
  cgroup::Limits limits{.memory_max = 256ULL << 20, .device_memory = view.device_memory};
  fake.ClearLog();
  auto session = (*driver)->CreateSession("gpu1", limits);
  ASSERT_TRUE(session) << session.error().message();
  EXPECT_THAT(fake.Writes(), ::testing::Contains("write /sys/fs/cgroup/ci/sessions/gpu1/dmem.max "
                                                 "drm/0000:03:00.0/vram0 2147483648"));
  // The same grant on a host without dmem: no device memory limit, and the session is made.
  cgroup::testing::FakeCgroupFs plain;
  cgroup::testing::PureV2Host(plain);
  auto plain_driver = cgroup::DetectDriver(plain, plain, {});
  ASSERT_TRUE(plain_driver && (*plain_driver)->Setup());
  WorkerGpuView plain_view = MakeWorkerGpuView(*ledger.inventory().Find(grant->device_index),
                                               *grant, *(*plain_driver)->DeviceMemoryRegions(), {});
  EXPECT_TRUE(plain_view.device_memory.empty());
  EXPECT_TRUE((*plain_driver)
                  ->CreateSession("gpu1", {.memory_max = 256ULL << 20,
                                           .device_memory = plain_view.device_memory}));
}

}  // namespace
}  // namespace cellhouse::resources
