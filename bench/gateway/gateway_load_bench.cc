// gateway_load_bench: the HTTP gateway under load, and what it costs over talking to celld
// directly, in one run on one model.
//
//   build/bin/gateway_load_bench [--quick] [--preset 15m] [--clients 64] [--seconds 20]
//                                [--tokens 32] [--rounds 5] [--streams 8] [--json FILE] [--keep]
//
// It starts its own celld (--gateway-user nobody) and cellgate (as nobody, one API key), then:
//   load      --clients streaming clients (POST /v1/completions, "stream": true), each asking
//             again as soon as its reply ends, for --seconds: errors, requests, tokens/s, time
//             to first token and inter-token gaps (p50/p99), and cellgate's CPU time and memory
//   overhead  --rounds rounds, each running the same work through celld's socket directly (the
//             way cellctl does: open, generate, close) and through the gateway, in alternating
//             order: one stream at a time (time to first token), and --streams concurrent
//             streams for a few seconds (aggregate tokens/s). Medians over the rounds; the
//             gateway's overhead is the ratio of throughputs and the difference of TTFT.
// Every request opens a session, generates --tokens tokens and closes it, on both paths.
// Figures only: nothing here asserts anything about time. An error in the overhead runs fails.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fcntl.h>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/flags.h"
#include "base/io.h"
#include "base/print.h"
#include "base/process.h"
#include "base/strings.h"
#include "base/unique_fd.h"
#include "bench/sessions/bench_common.h"
#include "cli/cellctl/json.h"
#include "cli/cellctl/session_client.h"

namespace cellhouse::bench {
namespace {

constexpr uid_t kGatewayUid = 65534;  // nobody
constexpr const char* kPrompt = "Once upon a time";

struct Options {
  BenchFlags common;
  std::string preset = "15m";
  int64_t clients = 64;
  int64_t seconds = 20;
  int64_t tokens = 32;
  int64_t rounds = 5;
  int64_t streams = 8;
  int64_t stream_seconds = 4;   // each concurrent-streams run of the overhead rounds
  int64_t single_requests = 8;  // each single-stream run of the overhead rounds
};

// What one generation looked like from its client.
struct Stream {
  bool ok = false;
  std::string error;
  int64_t start_ns = 0;
  int64_t first_ns = 0;  // first token
  int64_t end_ns = 0;
  int tokens = 0;
  std::vector<double> gaps_ms;  // between successive tokens
};

// ---- one streamed completion through the gateway (blocking, its own connection) ----

class SseClient {
 public:
  SseClient(uint16_t port, std::string key) : port_(port), key_(std::move(key)) {}

  Stream Run(int max_tokens) const {
    Stream s;
    s.start_ns = MonotonicNanos();
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port_);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (!fd.valid() || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      s.error = Error::FromErrno(errno, "connect").message();
      return s;
    }
    int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    std::string body = Format(
        R"({"model":"cellhouse","prompt":"%s","max_tokens":%d,"temperature":0,"stream":true})",
        kPrompt, max_tokens);
    std::string request =
        "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Authorization: Bearer " +
        key_ +
        "\r\nContent-Type: application/json\r\nConnection: close\r\n"
        "Content-Length: " +
        std::to_string(body.size()) + "\r\n\r\n" + body;
    if (!WriteAll(fd.get(), request)) {
      s.error = "send failed";
      return s;
    }
    Parse(fd.get(), s);
    s.end_ns = MonotonicNanos();
    return s;
  }

 private:
  static bool WriteAll(int fd, const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }

  // Reads the response as it arrives: headers, then (de-chunked) SSE events, each timed.
  static void Parse(int fd, Stream& s) {
    std::string raw;
    std::string body;  // de-chunked so far
    size_t body_at = std::string::npos;
    bool chunked = false;
    int status = 0;
    size_t chunk_pos = 0;  // next unparsed byte of raw (after the headers)
    size_t event_pos = 0;  // next unparsed byte of body
    int64_t last_token_ns = 0;
    bool done = false;
    char buf[16384];
    while (!done) {
      ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      const int64_t now = MonotonicNanos();
      raw.append(buf, static_cast<size_t>(n));
      if (body_at == std::string::npos) {
        size_t end = raw.find("\r\n\r\n");
        if (end == std::string::npos) continue;
        body_at = end + 4;
        status = std::atoi(raw.c_str() + raw.find(' ') + 1);
        std::string head = raw.substr(0, end);
        std::transform(head.begin(), head.end(), head.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        chunked = head.find("transfer-encoding: chunked") != std::string::npos;
        chunk_pos = body_at;
      }
      if (!chunked) {
        body.append(raw, chunk_pos, std::string::npos);
        chunk_pos = raw.size();
      } else {
        for (;;) {
          size_t line_end = raw.find("\r\n", chunk_pos);
          if (line_end == std::string::npos) break;
          size_t size = std::strtoul(raw.c_str() + chunk_pos, nullptr, 16);
          if (raw.size() < line_end + 2 + size + 2) break;
          body.append(raw, line_end + 2, size);
          chunk_pos = line_end + 2 + size + 2;
          if (size == 0) break;
        }
      }
      if (status != 200) continue;
      for (;;) {
        size_t end = body.find("\n\n", event_pos);
        if (end == std::string::npos) break;
        std::string event = body.substr(event_pos, end - event_pos);
        event_pos = end + 2;
        if (event.rfind("data: ", 0) != 0) continue;
        std::string data = event.substr(6);
        if (data == "[DONE]") {
          done = true;
          s.ok = s.error.empty();
          break;
        }
        if (data.find("\"error\"") != std::string::npos &&
            data.find("\"choices\"") == std::string::npos) {
          s.error = "error event: " + data.substr(0, 200);
          continue;
        }
        if (data.find("\"text\":\"\"") != std::string::npos) continue;  // e.g. the final chunk
        if (data.find("\"text\":") == std::string::npos) continue;
        ++s.tokens;
        if (s.first_ns == 0) {
          s.first_ns = now;
        } else {
          s.gaps_ms.push_back(static_cast<double>(now - last_token_ns) / 1e6);
        }
        last_token_ns = now;
      }
    }
    if (!s.ok && s.error.empty()) {
      s.error = status == 0
                    ? "no response"
                    : "HTTP " + std::to_string(status) + ": " +
                          (body_at == std::string::npos ? std::string() : raw.substr(body_at, 200));
    }
  }

  uint16_t port_;
  std::string key_;
};

// ---- one generation straight through celld's socket (as cellctl generate does) ----

Stream RunDirect(const std::string& socket, int max_tokens) {
  Stream s;
  s.start_ns = MonotonicNanos();
  std::optional<api::Error> refusal;
  Result<cli::SessionClient> session = cli::SessionClient::Open(socket, {}, &refusal);
  if (!session) {
    s.error = session.error().message();
    return s;
  }
  api::Generate g;
  g.set_prompt(kPrompt);
  g.set_max_new_tokens(static_cast<uint32_t>(max_tokens));
  g.set_temperature(0);
  int64_t last = 0;
  Result<api::Done> done = session->Generate(g, [&](const api::Piece& p) {
    if (p.text().empty()) return;
    const int64_t now = MonotonicNanos();
    ++s.tokens;
    if (s.first_ns == 0) {
      s.first_ns = now;
    } else {
      s.gaps_ms.push_back(static_cast<double>(now - last) / 1e6);
    }
    last = now;
  });
  if (!done) {
    s.error = done.error().message();
    return s;
  }
  static_cast<void>(session->Close());
  s.end_ns = MonotonicNanos();
  s.ok = true;
  return s;
}

// ---- running many ----

using Generator = std::function<Stream()>;

// `clients` threads each generating back to back until `seconds` have passed.
struct LoadResult {
  std::vector<Stream> streams;
  double wall_s = 0;
};

LoadResult RunLoad(const Generator& generate, int clients, double seconds) {
  LoadResult out;
  std::mutex mu;
  const int64_t start = MonotonicNanos();
  const int64_t deadline = start + static_cast<int64_t>(seconds * 1e9);
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(clients));
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&] {
      while (MonotonicNanos() < deadline) {
        Stream s = generate();
        std::lock_guard<std::mutex> lock(mu);
        out.streams.push_back(std::move(s));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  out.wall_s = static_cast<double>(MonotonicNanos() - start) / 1e9;
  return out;
}

struct LoadFigures {
  size_t requests = 0;
  size_t errors = 0;
  std::string first_error;
  double tokens_per_s = 0;
  Summary ttft_ms;
  Summary gap_ms;
};

LoadFigures Figures(const LoadResult& r) {
  LoadFigures f;
  std::vector<double> ttft, gaps;
  size_t tokens = 0;
  for (const Stream& s : r.streams) {
    ++f.requests;
    if (!s.ok) {
      ++f.errors;
      if (f.first_error.empty()) f.first_error = s.error;
      continue;
    }
    tokens += static_cast<size_t>(s.tokens);
    if (s.first_ns != 0) ttft.push_back(static_cast<double>(s.first_ns - s.start_ns) / 1e6);
    gaps.insert(gaps.end(), s.gaps_ms.begin(), s.gaps_ms.end());
  }
  f.tokens_per_s = r.wall_s > 0 ? static_cast<double>(tokens) / r.wall_s : 0;
  f.ttft_ms = Summarize(ttft);
  f.gap_ms = Summarize(gaps);
  return f;
}

// ---- cellgate ----

struct Gateway {
  ChildProcess process;
  uint16_t port = 0;
  std::string log_path;
};

// CPU time `pid` (single-threaded cellgate) has run, in seconds.
double CpuSeconds(pid_t pid) {
  Result<SchedStat> st = ReadSchedStat(pid);
  return st ? static_cast<double>(st->on_cpu_ns) / 1e9 : 0;
}

// VmHWM (peak RSS) of `pid`, in bytes.
uint64_t PeakRss(pid_t pid) {
  Result<std::string> status =
      ReadFileToString("/proc/" + std::to_string(pid) + "/status", 1 << 16);
  if (!status) return 0;
  size_t at = status->find("VmHWM:");
  return at == std::string::npos ? 0 : std::strtoull(status->c_str() + at + 6, nullptr, 10) * 1024;
}

Result<Gateway> StartGateway(const WorkDir& dir, const std::string& celld_socket,
                             const std::string& keys, int clients) {
  CH_ASSIGN_OR_RETURN(std::string binary, SiblingBinary("cellgate"));
  Gateway g;
  g.log_path = dir.File("cellgate.log");
  const std::string concurrent = std::to_string(clients * 2);
  std::vector<std::string> argv = {binary,        "--keys",
                                   keys,          "--celld-socket",
                                   celld_socket,  "--listen",
                                   "127.0.0.1:0", "--user",
                                   "nobody",      "--max-concurrent",
                                   concurrent,    "--max-connections-per-ip",
                                   concurrent,    "--max-idle-sessions",
                                   "0",           "--log-level",
                                   "info"};
  UniqueFd log(::open(g.log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!log.valid()) return Error::FromErrno(errno, "open " + g.log_path);
  CH_ASSIGN_OR_RETURN(g.process,
                      SpawnProgram({.argv = argv, .fds = {{2, log.get()}, {1, log.get()}}}));
  const int64_t deadline = MonotonicNanos() + 30 * kNanosPerSecond;
  while (MonotonicNanos() < deadline) {
    Result<std::string> text = ReadFileToString(g.log_path, size_t{1} << 20);
    if (text && text->find("cellgate ready") != std::string::npos) {
      size_t at = text->find("serving HTTP on ");
      size_t end = text->find('\n', at);
      std::string line = text->substr(at, end - at);
      g.port = static_cast<uint16_t>(std::atoi(line.c_str() + line.rfind(':') + 1));
      return g;
    }
    auto ended = g.process.TryReap();
    if (ended && ended->has_value()) {
      return Error("cellgate " + (*ended)->ToString() + " before serving:\n" +
                   (text ? *text : std::string()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return Error("cellgate did not start within 30 s; see " + g.log_path);
}

Result<std::string> MakeKey(const std::string& keys) {
  CH_ASSIGN_OR_RETURN(std::string binary, SiblingBinary("cellgate"));
  CH_ASSIGN_OR_RETURN(CommandOutput out,
                      RunAndCapture({binary, "key", "add", "--keys", keys, "--tenant", "bench"}));
  std::string key = out.out;
  while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
  if (key.empty()) return Error("cellgate key add printed no key");
  if (::chmod(keys.c_str(), 0644) != 0) return Error::FromErrno(errno, "chmod " + keys);
  return key;
}

int Fail(const std::string& message) {
  Printf(stderr, "gateway_load_bench: %s\n", message.c_str());
  return 1;
}

std::string Ms(double v) { return Format("%.1f", v); }

std::string SummaryRow(const Summary& s) { return Format("%.1f / %.1f", s.p50, s.p99); }

// The default bench policy, which the gateway's uid (whose tenants get what it may) may use too.
Status WritePolicies(const WorkDir& dir, const Options& o) {
  BenchPolicy policy;
  policy.max_sessions = static_cast<uint32_t>(o.clients * 2);
  policy.max_sessions_per_tenant = static_cast<uint32_t>(o.clients * 2);
  policy.cpu_percent = 0;
  policy.memory_max_bytes = 256ull << 20;
  policy.memory_high_bytes = 200ull << 20;
  CH_RETURN_IF_ERROR(WritePolicy(dir.File("policies"), policy));
  const std::string file = dir.File("policies/default.textproto");
  CH_ASSIGN_OR_RETURN(std::string text, ReadFileToString(file, 1 << 20));
  return WriteStringToFile(file, text + "uids: " + std::to_string(kGatewayUid) + "\n");
}

// celld (--gateway-user nobody) and cellgate (as nobody) on a generated model, and a key.
struct Servers {
  std::unique_ptr<Celld> celld;
  Gateway gate;
  std::string key;
};

Result<Servers> StartServers(const WorkDir& dir, const Options& o) {
  // cellgate runs as nobody: it must reach celld's socket and read the keys.
  if (::chmod(dir.path().c_str(), 0755) != 0) return Error::FromErrno(errno, "chmod work dir");
  CH_ASSIGN_OR_RETURN(std::string model, MakeModel(dir, o.preset, 1));
  CH_RETURN_IF_ERROR(WritePolicies(dir, o));
  Servers s;
  CH_ASSIGN_OR_RETURN(
      s.celld,
      Celld::Start(dir, {.name = "gw",
                         .model = model,
                         .policy_dir = dir.File("policies"),
                         .extra_args = {"--gateway-user", std::to_string(kGatewayUid), "--ctx-size",
                                        "256", "--pool-size", "0", "--memory-budget", "8G"}}));
  if (::chmod(s.celld->socket().c_str(), 0666) != 0) {
    return Error::FromErrno(errno, "chmod celld's socket");
  }
  const std::string keys = dir.File("keys");
  CH_ASSIGN_OR_RETURN(s.key, MakeKey(keys));
  CH_ASSIGN_OR_RETURN(s.gate,
                      StartGateway(dir, s.celld->socket(), keys, static_cast<int>(o.clients)));
  return s;
}

double MiB(uint64_t bytes) { return static_cast<double>(bytes) / 1048576.0; }

// The load run through the gateway, then the same clients straight on celld's socket for scale.
void MeasureLoad(const Options& o, const Generator& via_gateway, const Generator& direct,
                 pid_t gateway_pid, cli::JsonObject& j) {
  const double cpu_before = CpuSeconds(gateway_pid);
  LoadResult load =
      RunLoad(via_gateway, static_cast<int>(o.clients), static_cast<double>(o.seconds));
  const double gateway_cpu = CpuSeconds(gateway_pid) - cpu_before;
  const LoadFigures lf = Figures(load);
  const uint64_t gateway_hwm = PeakRss(gateway_pid);
  Result<ProcessMemory> gateway_mem = ReadProcessMemory(gateway_pid);
  const uint64_t gateway_rss = gateway_mem ? gateway_mem->rss : 0;
  LoadResult load_direct =
      RunLoad(direct, static_cast<int>(o.clients), static_cast<double>(o.seconds));
  const LoadFigures df = Figures(load_direct);
  Printf(stdout, "\nload: %lld streaming clients for %lld s (each ends its last request after)\n",
         static_cast<long long>(o.clients), static_cast<long long>(o.seconds));
  Table lt({"path", "wall s", "requests", "errors", "tokens/s", "TTFT p50/p99 ms", "ITL p50/p99 ms",
            "gateway CPU", "gateway RSS / peak"});
  lt.AddRow({"gateway", Format("%.1f", load.wall_s), std::to_string(lf.requests),
             std::to_string(lf.errors), Format("%.0f", lf.tokens_per_s), SummaryRow(lf.ttft_ms),
             SummaryRow(lf.gap_ms),
             Format("%.2f s (%.1f%% of a core)", gateway_cpu, 100 * gateway_cpu / load.wall_s),
             Format("%.1f / %.1f MiB", MiB(gateway_rss), MiB(gateway_hwm))});
  lt.AddRow({"direct", Format("%.1f", load_direct.wall_s), std::to_string(df.requests),
             std::to_string(df.errors), Format("%.0f", df.tokens_per_s), SummaryRow(df.ttft_ms),
             SummaryRow(df.gap_ms), "-", "-"});
  lt.Print(stdout);
  if (lf.errors > 0) Printf(stdout, "first gateway error: %s\n", lf.first_error.c_str());
  if (df.errors > 0) Printf(stdout, "first direct error: %s\n", df.first_error.c_str());
  j.Add("clients", o.clients)
      .Add("load_seconds", load.wall_s)
      .Add("requests", static_cast<uint64_t>(lf.requests))
      .Add("errors", static_cast<uint64_t>(lf.errors))
      .Add("tokens_per_s", lf.tokens_per_s)
      .AddRaw("ttft_ms", SummaryJson(lf.ttft_ms))
      .AddRaw("itl_ms", SummaryJson(lf.gap_ms))
      .Add("gateway_cpu_s", gateway_cpu)
      .Add("gateway_rss_bytes", gateway_rss)
      .Add("gateway_peak_rss_bytes", gateway_hwm)
      .Add("direct_requests", static_cast<uint64_t>(df.requests))
      .Add("direct_errors", static_cast<uint64_t>(df.errors))
      .Add("direct_tokens_per_s", df.tokens_per_s)
      .AddRaw("direct_ttft_ms", SummaryJson(df.ttft_ms))
      .AddRaw("direct_itl_ms", SummaryJson(df.gap_ms));
}

// Interleaved rounds of the same work on both paths: one stream's TTFT, --streams' tokens/s.
Status MeasureOverhead(const Options& o, const Generator& via_gateway, const Generator& direct,
                       cli::JsonObject& j) {
  std::vector<double> ttft_direct, ttft_gateway, tps_direct, tps_gateway;
  for (int64_t r = 0; r < o.rounds; ++r) {
    const bool gateway_first = r % 2 == 1;
    for (int side = 0; side < 2; ++side) {
      const bool gw = (side == 0) == gateway_first;
      const Generator& g = gw ? via_gateway : direct;
      const std::string path = gw ? "gateway" : "direct";
      std::vector<double> ttft;
      for (int64_t i = 0; i < o.single_requests; ++i) {
        Stream s = g();
        if (!s.ok) return Error(path + " request failed: " + s.error);
        ttft.push_back(static_cast<double>(s.first_ns - s.start_ns) / 1e6);
      }
      (gw ? ttft_gateway : ttft_direct).push_back(Median(ttft));
      LoadFigures mf =
          Figures(RunLoad(g, static_cast<int>(o.streams), static_cast<double>(o.stream_seconds)));
      if (mf.errors > 0) return Error(path + " streams failed: " + mf.first_error);
      (gw ? tps_gateway : tps_direct).push_back(mf.tokens_per_s);
    }
  }
  const double td = Median(ttft_direct), tg = Median(ttft_gateway);
  const double pd = Median(tps_direct), pg = Median(tps_gateway);
  Printf(stdout,
         "\noverhead: %lld interleaved rounds, medians (direct = celld's socket, as cellctl)\n",
         static_cast<long long>(o.rounds));
  Table ot({"path", "TTFT 1 stream ms",
            Format("tokens/s, %lld streams", static_cast<long long>(o.streams))});
  ot.AddRow({"direct", Ms(td), Format("%.0f", pd)});
  ot.AddRow({"gateway", Ms(tg), Format("%.0f", pg)});
  ot.AddRow({"gateway - direct", Format("%+.2f ms", tg - td),
             Format("%.3fx (%+.1f%%)", pd > 0 ? pg / pd : 0, pd > 0 ? 100 * (pg / pd - 1) : 0)});
  ot.Print(stdout);
  j.Add("rounds", o.rounds)
      .Add("streams", o.streams)
      .Add("ttft_direct_ms", td)
      .Add("ttft_gateway_ms", tg)
      .Add("tps_direct", pd)
      .Add("tps_gateway", pg);
  return Ok();
}

int Run(const Options& o) {
  Result<WorkDir> dir = WorkDir::Create(o.common.keep);
  if (!dir) return Fail(dir.error().message());
  Result<Servers> servers = StartServers(*dir, o);
  if (!servers) {
    dir->Keep();
    return Fail(servers.error().message() + "; logs in " + dir->path());
  }
  SseClient http(servers->gate.port, servers->key);
  const int tokens = static_cast<int>(o.tokens);
  Generator via_gateway = [&] { return http.Run(tokens); };
  const std::string socket = servers->celld->socket();
  Generator direct = [&] { return RunDirect(socket, tokens); };
  // Warm both paths (page cache, the gateway's catalog).
  for (const Generator* g : {&direct, &via_gateway}) {
    Stream s = (*g)();
    if (!s.ok) {
      dir->Keep();
      return Fail("warm-up request failed: " + s.error + "; logs in " + dir->path());
    }
  }
  Printf(stdout, "gateway_load_bench: preset %s, %lld tokens a request, prompt \"%s\"\n",
         o.preset.c_str(), static_cast<long long>(o.tokens), kPrompt);
  cli::JsonObject j;
  j.Add("preset", o.preset).Add("tokens", o.tokens);
  MeasureLoad(o, via_gateway, direct, servers->gate.process.pid(), j);
  if (Status st = MeasureOverhead(o, via_gateway, direct, j); !st) {
    dir->Keep();
    return Fail(st.error().message() + "; logs in " + dir->path());
  }
  if (Status st = WriteJson(o.common.json_path, j.Render()); !st) return Fail(st.error().message());
  static_cast<void>(servers->gate.process.Kill(SIGTERM));
  static_cast<void>(servers->gate.process.Wait());
  if (Status st = servers->celld->Stop(); !st) return Fail(st.error().message());
  return 0;
}

}  // namespace
}  // namespace cellhouse::bench

int main(int argc, char** argv) {
  using cellhouse::bench::Options;
  Options o;
  cellhouse::FlagSet flags(
      "gateway_load_bench [--quick] [--clients N] [--seconds S] [--json FILE]",
      "The HTTP gateway under N streaming clients, and its overhead over celld's socket.");
  cellhouse::bench::AddBenchFlags(flags, &o.common);
  flags.String("preset", &o.preset, "NAME", "model preset (cellmodel make)");
  flags.Int("clients", &o.clients, "N", "streaming clients of the load run");
  flags.Int("seconds", &o.seconds, "S", "length of the load run");
  flags.Int("tokens", &o.tokens, "N", "tokens each request generates");
  flags.Int("rounds", &o.rounds, "N", "interleaved rounds of the overhead comparison");
  flags.Int("streams", &o.streams, "N", "concurrent streams of the overhead's throughput runs");
  if (auto stop = cellhouse::bench::ParseBenchFlags(flags, "gateway_load_bench", argc, argv)) {
    return *stop;
  }
  if (o.common.quick) {
    o.clients = std::min<int64_t>(o.clients, 16);
    o.seconds = std::min<int64_t>(o.seconds, 5);
    o.rounds = std::min<int64_t>(o.rounds, 2);
    o.stream_seconds = 2;
    o.single_requests = 3;
  }
  if (o.clients < 1 || o.seconds < 1 || o.tokens < 2 || o.rounds < 1 || o.streams < 1) {
    cellhouse::Printf(stderr,
                      "gateway_load_bench: counts must be positive (--tokens at least 2)\n");
    return 2;
  }
  return cellhouse::bench::Run(o);
}
