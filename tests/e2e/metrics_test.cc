// celld's Prometheus metrics, scraped the two ways an admin gets them (an inherited metrics
// socket, as celld-metrics.socket passes it, and --metrics-listen), every line of the exposition
// parsed and checked against the text format (version 0.0.4) and the project's conventions,
// and the values checked to follow what the test did.
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/clock.h"
#include "base/io.h"
#include "base/str_cat.h"
#include "base/strings.h"
#include "cli/cellctl/session_client.h"
#include "supervisor/metrics.h"
#include "tests/e2e/ops_support.h"
#include "tests/support/celld_harness.h"

namespace cellhouse {
namespace {

using testing::Daemon;
using ::testing::HasSubstr;
using testing::kLongWaitMs;

using Labels = std::map<std::string, std::string>;

struct Sample {
  std::string name;
  Labels labels;
  double value = 0;
};

struct Family {
  std::string name;
  std::string type;
  std::string help;
  std::vector<Sample> samples;
};

struct Exposition {
  std::vector<Family> families;
  int comment_lines = 0;

  const Family* Find(const std::string& name) const {
    for (const Family& f : families) {
      if (f.name == name) return &f;
    }
    return nullptr;
  }
  // The value of one series, or nullopt when it is absent.
  std::optional<double> Value(const std::string& name, const Labels& labels = {}) const {
    for (const Family& f : families) {
      for (const Sample& s : f.samples) {
        if (s.name == name && s.labels == labels) return s.value;
      }
    }
    return std::nullopt;
  }
  double ValueOr0(const std::string& name, const Labels& labels = {}) const {
    return Value(name, labels).value_or(0);
  }
};

bool ValidMetricName(std::string_view name) {
  static const std::regex kName("[a-zA-Z_:][a-zA-Z0-9_:]*");
  return std::regex_match(name.begin(), name.end(), kName);
}

bool ValidLabelName(std::string_view name) {
  static const std::regex kName("[a-zA-Z_][a-zA-Z0-9_]*");
  return std::regex_match(name.begin(), name.end(), kName) && name.substr(0, 2) != "__";
}

// A sample value as Go's strconv.ParseFloat (Prometheus' parser) reads it.
std::optional<double> ParseValue(const std::string& text) {
  if (text == "+Inf" || text == "Inf") return HUGE_VAL;
  if (text == "-Inf") return -HUGE_VAL;
  if (text == "NaN") return std::nan("");
  static const std::regex kNumber("[+-]?([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][+-]?[0-9]+)?");
  if (!std::regex_match(text, kNumber)) return std::nullopt;
  return std::strtod(text.c_str(), nullptr);
}

// A quoted label value starting at line[*i] (just after the opening quote), unescaped; *i ends
// after the closing quote. The format escapes backslash, double quote and newline, nothing else.
Result<std::string> ParseLabelValue(const std::string& line, size_t* i) {
  std::string value;
  while (*i < line.size()) {
    char c = line[(*i)++];
    if (c == '"') return value;
    if (c != '\\') {
      value += c;
      continue;
    }
    if (*i >= line.size()) return Error("dangling backslash");
    char e = line[(*i)++];
    if (e == '\\' || e == '"') {
      value += e;
    } else if (e == 'n') {
      value += '\n';
    } else {
      return Error(StrCat("bad escape \\", e));
    }
  }
  return Error("unterminated label value");
}

// The labels of a sample from line[i] (just after '{'); returns where the closing '}' ends.
Result<size_t> ParseLabels(const std::string& line, size_t i, Labels* labels) {
  while (i >= line.size() || line[i] != '}') {
    size_t eq = line.find('=', i);
    if (eq == std::string::npos) return Error("label without '='");
    std::string label = line.substr(i, eq - i);
    if (!ValidLabelName(label)) return Error(StrCat("invalid label name ", Quote(label)));
    i = eq + 1;
    if (i >= line.size() || line[i] != '"') return Error("label value not quoted");
    ++i;
    CH_ASSIGN_OR_RETURN(std::string value, ParseLabelValue(line, &i));
    if (!labels->emplace(label, std::move(value)).second) {
      return Error(StrCat("label ", label, " twice"));
    }
    if (i < line.size() && line[i] == ',') ++i;
  }
  return i + 1;
}

// "name{label="value",...} value [timestamp]".
Result<Sample> ParseSample(const std::string& line) {
  Sample sample;
  size_t i = line.find_first_of("{ ");
  if (i == std::string::npos) return Error("no value");
  sample.name = line.substr(0, i);
  if (!ValidMetricName(sample.name)) return Error("invalid metric name");
  if (line[i] == '{') {
    CH_ASSIGN_OR_RETURN(i, ParseLabels(line, i + 1, &sample.labels));
  }
  if (i >= line.size() || line[i] != ' ') return Error("no space before the value");
  std::vector<std::string_view> rest = Split(std::string_view(line).substr(i + 1), ' ');
  if (rest.empty() || rest.size() > 2) return Error("expected a value [timestamp]");
  std::optional<double> value = ParseValue(std::string(rest[0]));
  if (!value) return Error(StrCat("bad value ", Quote(rest[0])));
  sample.value = *value;
  if (rest.size() == 2 && !ParseInt64(rest[1], "timestamp")) return Error("bad timestamp");
  return sample;
}

// Reads the text exposition format line by line: "# HELP name text", "# TYPE name type", other
// comments, and samples. Any line that does not parse, and any rule of the format it breaks, is
// an error.
class ExpositionParser {
 public:
  Status Line(const std::string& line) {
    if (line.empty()) return Error("empty line");
    if (line[0] != '#') {
      CH_ASSIGN_OR_RETURN(Sample sample, ParseSample(line));
      return Add(std::move(sample));
    }
    static const std::regex kMeta("# (HELP|TYPE) ([^ ]+) (.*)");
    std::smatch m;
    if (!std::regex_match(line, m, kMeta)) {
      ++out_.comment_lines;
      return Ok();
    }
    return Meta(m[1], m[2], m[3]);
  }

  Result<Exposition> Finish() {
    for (const Family& f : out_.families) {
      if (f.type.empty()) return Error(StrCat("family ", f.name, " has no TYPE"));
      if (f.help.empty()) return Error(StrCat("family ", f.name, " has no HELP"));
    }
    return std::move(out_);
  }

 private:
  Status Meta(const std::string& what, const std::string& name, const std::string& text) {
    if (!ValidMetricName(name)) return Error("invalid metric name");
    if (current_ == nullptr || current_->name != name) {
      // A family's lines are contiguous: one seen before may not start again.
      if (out_.Find(name) != nullptr) return Error(StrCat("family ", name, " reopened"));
      out_.families.push_back({.name = name});
      current_ = &out_.families.back();
    }
    if (what == "HELP") {
      if (!current_->help.empty()) return Error(StrCat("second HELP for ", name));
      // Docstrings escape only backslash and newline.
      static const std::regex kHelp("([^\\\\]|\\\\[\\\\n])*");
      if (!std::regex_match(text, kHelp)) return Error("bad escape in HELP");
      current_->help = text;
      return Ok();
    }
    static const std::set<std::string> kTypes = {"counter", "gauge", "histogram", "summary",
                                                 "untyped"};
    if (kTypes.count(text) == 0) return Error(StrCat("unknown type ", text));
    if (!current_->type.empty()) return Error(StrCat("second TYPE for ", name));
    if (!current_->samples.empty()) return Error("TYPE after samples");
    current_->type = text;
    return Ok();
  }

  // The sample belongs to the family being described, and is the only one of its series.
  Status Add(Sample sample) {
    if (current_ == nullptr) return Error("sample before any TYPE");
    const std::string& family = current_->name;
    bool belongs = sample.name == family;
    if (current_->type == "histogram") {
      belongs = sample.name == StrCat(family, "_bucket") || sample.name == StrCat(family, "_sum") ||
                sample.name == StrCat(family, "_count");
    }
    if (!belongs) return Error(StrCat("sample outside its family ", family));
    std::string key = sample.name;
    for (const auto& [k, v] : sample.labels) key += StrCat("|", k, "=", v);
    if (!series_.insert(key).second) return Error("duplicate series");
    current_->samples.push_back(std::move(sample));
    return Ok();
  }

  Exposition out_;
  Family* current_ = nullptr;
  std::set<std::string> series_;
};

Result<Exposition> Parse(const std::string& text) {
  if (text.empty()) return Exposition{};
  if (text.back() != '\n') return Error("the last line does not end in \\n");
  ExpositionParser parser;
  size_t number = 0;
  for (std::string_view line : Split(std::string_view(text).substr(0, text.size() - 1), '\n')) {
    ++number;
    Status ok = parser.Line(std::string(line));
    if (!ok) return Error(StrCat("line ", number, " ", Quote(line), ": ", ok.error().message()));
  }
  return parser.Finish();
}

// Appends "<family>: <what>" to a list of problems.
class Problems {
 public:
  template <typename... Pieces>
  void Add(const Family& f, const Pieces&... pieces) {
    list_.push_back(StrCat(f.name, ": ", pieces...));
  }
  std::vector<std::string> Take() { return std::move(list_); }

 private:
  std::vector<std::string> list_;
};

// Per label set without le: buckets in increasing le, cumulative, +Inf last and equal to
// _count, _sum present and not negative.
void CheckHistogram(const Family& f, Problems* problems) {
  std::map<Labels, std::vector<std::pair<double, double>>> buckets;
  std::map<Labels, double> counts, sums;
  for (const Sample& s : f.samples) {
    Labels rest = s.labels;
    if (s.name == StrCat(f.name, "_count")) {
      counts[rest] = s.value;
      continue;
    }
    if (s.name == StrCat(f.name, "_sum")) {
      sums[rest] = s.value;
      continue;
    }
    auto le = rest.find("le");
    if (le == rest.end()) {
      problems->Add(f, "bucket without le");
      continue;
    }
    std::optional<double> bound = ParseValue(le->second);
    if (!bound) problems->Add(f, "le ", Quote(le->second), " is not a number");
    rest.erase(le);
    buckets[rest].emplace_back(bound.value_or(0), s.value);
  }
  if (buckets.empty()) problems->Add(f, "a histogram without buckets");
  for (const auto& [labels, list] : buckets) {
    for (size_t i = 1; i < list.size(); ++i) {
      if (!(list[i].first > list[i - 1].first)) problems->Add(f, "le not increasing");
      if (list[i].second < list[i - 1].second) problems->Add(f, "buckets not cumulative");
    }
    if (list.empty() || !std::isinf(list.back().first)) problems->Add(f, "no +Inf bucket");
    if (counts.count(labels) == 0 || sums.count(labels) == 0) {
      problems->Add(f, "no _count or no _sum");
      continue;
    }
    if (list.back().second != counts[labels]) problems->Add(f, "+Inf bucket differs from _count");
    if (sums[labels] < 0) problems->Add(f, "negative _sum");
  }
}

// The project's conventions (supervisor/metrics.h) and the histogram rules; one string per
// problem found.
std::vector<std::string> ConventionProblems(const Exposition& e) {
  Problems problems;
  static const std::regex kNotBaseUnit(
      ".*_(ms|milliseconds|us|microseconds|ns|nanoseconds|minutes|hours|kb|kib|mb|mib|gb|gib|"
      "percent)(_total)?");
  static const std::regex kSessionLike(".*(session|token|^id$|_id$|^sid$).*");
  for (const Family& f : e.families) {
    if (!StartsWith(f.name, "cellhouse_")) problems.Add(f, "not prefixed cellhouse_");
    if (std::regex_match(f.name, kNotBaseUnit)) problems.Add(f, "not in base units");
    bool total = f.name.size() > 6 && f.name.substr(f.name.size() - 6) == "_total";
    if (f.type == "counter" && !total) problems.Add(f, "a counter not ending in _total");
    if (f.type != "counter" && total) problems.Add(f, "_total on a ", f.type);
    for (const Sample& s : f.samples) {
      for (const auto& [label, value] : s.labels) {
        if (std::regex_match(label, kSessionLike)) {
          problems.Add(f, "label ", label, " names sessions (unbounded cardinality)");
        }
        if (label == "le" && f.type != "histogram") problems.Add(f, "le outside a histogram");
      }
      if (f.type == "counter" && (s.value < 0 || s.value != std::floor(s.value))) {
        problems.Add(f, "counter value ", std::to_string(s.value));
      }
    }
    if (f.type == "histogram") CheckHistogram(f, &problems);
  }
  return problems.Take();
}

// Scrapes, checks the HTTP answer, parses and checks every line; fails the test otherwise.
Exposition ScrapeAndCheck(const Result<testing::HttpResponse>& response) {
  EXPECT_TRUE(response) << response.error().message();
  if (!response) return {};
  EXPECT_EQ(response->status_line, "HTTP/1.0 200 OK");
  EXPECT_THAT(response->headers, HasSubstr("Content-Type: text/plain; version=0.0.4"));
  Result<Exposition> parsed = Parse(response->body);
  EXPECT_TRUE(parsed) << parsed.error().message() << "\n" << response->body;
  if (!parsed) return {};
  EXPECT_EQ(parsed->comment_lines, 0);
  std::vector<std::string> problems = ConventionProblems(*parsed);
  EXPECT_TRUE(problems.empty()) << ::testing::PrintToString(problems) << "\n" << response->body;
  return *parsed;
}

// The renderer alone, with label values that need escaping, round-trips through the parser.
TEST(MetricsFormatTest, HostileLabelValuesAreEscapedAndParseBack) {
  supervisor::Metrics metrics;
  const std::string hostile = "a\"b\\c\nd} x=\"1\"";
  metrics.sessions_started.Inc({hostile});
  metrics.sessions_ended.Inc({hostile, "closed"}, 3);
  metrics.open_latency.Observe(0.003);
  metrics.open_latency.Observe(7);
  supervisor::GaugeSnapshot gauges;
  gauges.sessions_active[hostile] = 2;
  std::string text = metrics.Render(gauges, "1.0\"\n");
  Result<Exposition> parsed = Parse(text);
  ASSERT_TRUE(parsed) << parsed.error().message() << "\n" << text;
  EXPECT_TRUE(ConventionProblems(*parsed).empty()) << text;
  EXPECT_EQ(parsed->Value("cellhouse_sessions_started_total", {{"policy", hostile}}), 1);
  EXPECT_EQ(
      parsed->Value("cellhouse_sessions_ended_total", {{"policy", hostile}, {"reason", "closed"}}),
      3);
  EXPECT_EQ(parsed->Value("cellhouse_sessions_active", {{"policy", hostile}}), 2);
  EXPECT_EQ(parsed->Value("cellhouse_policy_memory_bytes", {{"policy", hostile}}), 0);
  EXPECT_EQ(parsed->Value("cellhouse_build_info", {{"version", "1.0\"\n"}}), 1);
  EXPECT_EQ(parsed->Value("cellhouse_session_open_duration_seconds_bucket", {{"le", "0.005"}}), 1);
  EXPECT_EQ(parsed->Value("cellhouse_session_open_duration_seconds_bucket", {{"le", "+Inf"}}), 2);
  EXPECT_EQ(parsed->Value("cellhouse_session_open_duration_seconds_count"), 2);
}

TEST(MetricsFormatTest, TheParserRefusesWhatPrometheusWould) {
  EXPECT_FALSE(Parse("cellhouse_x 1\n"));  // no TYPE
  EXPECT_FALSE(Parse("# HELP a h\n# TYPE a gauge\na{l=\"\\t\"} 1\n"));
  EXPECT_FALSE(Parse("# HELP a h\n# TYPE a gauge\na{l=\"x} 1\n"));
  EXPECT_FALSE(Parse("# HELP a h\n# TYPE a gauge\na 1\na 2\n"));
  EXPECT_FALSE(Parse("# HELP a h\n# TYPE a gauge\na one\n"));
  EXPECT_FALSE(Parse("# HELP a h\n# TYPE a gauge\nb 1\n"));
  EXPECT_FALSE(Parse("# HELP a h\n# TYPE a gauge\na 1"));
  auto ok = Parse(
      "# HELP a h\n# TYPE a histogram\na_bucket{le=\"1\"} 2\n"
      "a_bucket{le=\"+Inf\"} 1\na_sum 1\na_count 1\n");
  ASSERT_TRUE(ok);
  EXPECT_FALSE(ConventionProblems(*ok).empty());  // not cumulative, no prefix
}

class MetricsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    suite_dir_ = new testing::TempDir();
    suite_model_ = new std::string(testing::GenerateModel(*suite_dir_, "tiny", 31));
  }
  static void TearDownTestSuite() {
    delete suite_model_;
    delete suite_dir_;
  }
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: celld creates namespaces and cgroups";
    policies_ = local_.File("policies");
    testing::WritePolicy(policies_, testing::PolicySpec{});
    testing::PolicySpec solo;
    solo.name = "solo";
    solo.max_sessions = 1;
    solo.max_sessions_per_tenant = 1;
    testing::WritePolicy(policies_, solo);
  }

  static testing::TempDir* suite_dir_;
  static std::string* suite_model_;
  testing::TempDir local_;
  std::string policies_;
};

testing::TempDir* MetricsTest::suite_dir_ = nullptr;
std::string* MetricsTest::suite_model_ = nullptr;

TEST_F(MetricsTest, EveryLineParsesAndTheValuesFollowTheSessions) {
  auto inherited_port = testing::FreeLoopbackPort();
  auto listen_port = testing::FreeLoopbackPort();
  ASSERT_TRUE(inherited_port && listen_port);
  ASSERT_NE(*inherited_port, *listen_port);
  std::string api = local_.File("api.sock");
  // As celld.socket and celld-metrics.socket pass them: "api" on a path, "metrics" on loopback
  // TCP; and --metrics-listen besides.
  auto celld = Daemon::Spawn(
      {.argv = testing::SocketActivated(
           {"-l", api, "-l", "127.0.0.1:" + std::to_string(*inherited_port),
            "--fdname=api:metrics"},
           testing::CelldArgs(*suite_model_, policies_,
                              {"--metrics-listen", "127.0.0.1:" + std::to_string(*listen_port)})),
       .log_path = local_.File("celld.log")});
  ASSERT_TRUE(celld) << celld.error().message();
  // The first scrape starts celld (systemd-socket-activate listens until then).
  Result<testing::HttpResponse> first = Error("not tried");
  for (int i = 0; i < kLongWaitMs / 20 && !first; ++i) {
    first = testing::HttpGetTcp(*inherited_port, "/metrics");
    if (!first) ::usleep(20'000);
  }
  ASSERT_TRUE(first) << first.error().message() << celld->Log();
  Exposition idle = ScrapeAndCheck(first);
  Exposition idle_listen = ScrapeAndCheck(testing::HttpGetTcp(*listen_port, "/metrics"));
  EXPECT_EQ(idle.families.size(), idle_listen.families.size());
  EXPECT_EQ(idle.Value("cellhouse_sessions_active", {{"policy", "default"}}), 0);
  EXPECT_EQ(idle.Value("cellhouse_sessions_active", {{"policy", "solo"}}), 0);
  EXPECT_EQ(idle.Value("cellhouse_policy_memory_bytes", {{"policy", "solo"}}), 0);
  EXPECT_EQ(idle.Value("cellhouse_session_open_duration_seconds_count"), 0);

  // Three sessions under "default", one turn each.
  std::set<std::string> session_ids;
  double tokens = 0, inter_token = 0, first_tokens = 0;
  for (int i = 0; i < 3; ++i) {
    auto session = cli::SessionClient::Open(api, {});
    ASSERT_TRUE(session) << session.error().message();
    session_ids.insert(testing::Hex(session->opened().session_id()));
    api::Generate g;
    g.set_prompt("Once upon a time " + std::to_string(i));
    g.set_max_new_tokens(12);
    g.set_seed(static_cast<uint64_t>(i) + 1);
    auto done = session->Generate(g, [](const api::Piece&) {});
    ASSERT_TRUE(done) << done.error().message();
    tokens += done->generated_tokens();
    if (done->generated_tokens() > 0) {
      first_tokens += 1;
      inter_token += done->generated_tokens() - 1;
    }
    EXPECT_TRUE(session->Close());
  }
  // One under "solo", held open; a second one there is refused by the policy's cap, and one
  // under a policy that does not exist is refused too.
  auto held = cli::SessionClient::Open(api, {.policy = "solo"});
  ASSERT_TRUE(held) << held.error().message();
  session_ids.insert(testing::Hex(held->opened().session_id()));
  std::optional<api::Error> refusal;
  EXPECT_FALSE(cli::SessionClient::Open(api, {.policy = "solo"}, &refusal));
  ASSERT_TRUE(refusal);
  EXPECT_EQ(refusal->code(), api::ADMISSION_REFUSED);
  EXPECT_FALSE(cli::SessionClient::Open(api, {.policy = "no-such-policy"}));

  Exposition busy = ScrapeAndCheck(testing::HttpGetTcp(*listen_port, "/metrics"));
  EXPECT_EQ(busy.Value("cellhouse_sessions_active", {{"policy", "solo"}}), 1);
  // The held session's worker is charged to its cgroup.
  EXPECT_GT(busy.ValueOr0("cellhouse_policy_memory_bytes", {{"policy", "solo"}}), 0);
  EXPECT_GT(busy.ValueOr0("cellhouse_memory_committed_bytes"), 0);
  EXPECT_TRUE(held->Close());

  // The ends and the workers' reports reach celld on their own time: scrape until they have.
  Exposition done;
  int64_t deadline = MonotonicNanos() + int64_t{kLongWaitMs} * kNanosPerMilli;
  while (MonotonicNanos() < deadline) {
    done = ScrapeAndCheck(testing::HttpGetTcp(*inherited_port, "/metrics"));
    if (done.ValueOr0("cellhouse_sessions_ended_total",
                      {{"policy", "default"}, {"reason", "closed"}}) == 3 &&
        done.ValueOr0("cellhouse_sessions_ended_total",
                      {{"policy", "solo"}, {"reason", "closed"}}) == 1 &&
        done.ValueOr0("cellhouse_tokens_generated_total", {{"policy", "default"}}) == tokens) {
      break;
    }
    ::usleep(50'000);
  }
  EXPECT_EQ(done.Value("cellhouse_sessions_started_total", {{"policy", "default"}}), 3);
  EXPECT_EQ(done.Value("cellhouse_sessions_started_total", {{"policy", "solo"}}), 1);
  EXPECT_EQ(
      done.Value("cellhouse_sessions_ended_total", {{"policy", "default"}, {"reason", "closed"}}),
      3);
  EXPECT_EQ(
      done.Value("cellhouse_sessions_ended_total", {{"policy", "solo"}, {"reason", "closed"}}), 1);
  EXPECT_EQ(done.Value("cellhouse_sessions_active", {{"policy", "default"}}), 0);
  EXPECT_EQ(done.Value("cellhouse_sessions_active", {{"policy", "solo"}}), 0);
  EXPECT_EQ(done.Value("cellhouse_admission_refusals_total", {{"reason", "policy_sessions"}}), 1);
  EXPECT_EQ(done.Value("cellhouse_admission_refusals_total", {{"reason", "unknown_policy"}}), 1);
  EXPECT_GT(tokens, 0);
  EXPECT_EQ(done.Value("cellhouse_tokens_generated_total", {{"policy", "default"}}), tokens);
  // Histograms: one open per started session, one first token per turn that made any, one
  // inter-token gap per further token.
  EXPECT_EQ(done.Value("cellhouse_session_open_duration_seconds_count"), 4);
  EXPECT_GT(done.ValueOr0("cellhouse_session_open_duration_seconds_sum"), 0);
  EXPECT_EQ(done.Value("cellhouse_time_to_first_token_seconds_count"), first_tokens);
  EXPECT_EQ(done.Value("cellhouse_inter_token_latency_seconds_count"), inter_token);
  EXPECT_GT(done.ValueOr0("cellhouse_inter_token_latency_seconds_sum"), 0);
  // Weights and budget agree with what celld tells `cellctl status`.
  api::Request status_request;
  status_request.mutable_status();
  auto status = cli::AdminRequest(api, status_request);
  ASSERT_TRUE(status && status->has_status());
  EXPECT_EQ(done.Value("cellhouse_weights_mapped_bytes"),
            static_cast<double>(status->status().weights_bytes()));
  EXPECT_EQ(done.Value("cellhouse_weights_resident_bytes"),
            static_cast<double>(status->status().weights_resident_bytes()));
  EXPECT_GT(done.ValueOr0("cellhouse_weights_resident_bytes"), 0);
  EXPECT_EQ(done.Value("cellhouse_memory_budget_bytes"),
            static_cast<double>(status->status().memory_budget_bytes()));
  EXPECT_EQ(done.Value("cellhouse_memory_committed_bytes"), 0);
  EXPECT_EQ(done.Value("cellhouse_build_info", {{"version", status->status().version()}}), 1);

  // No session id anywhere, in any form.
  auto body = testing::HttpGetTcp(*listen_port, "/metrics");
  ASSERT_TRUE(body);
  for (const std::string& id : session_ids) {
    EXPECT_THAT(body->body, ::testing::Not(HasSubstr(id)));
    EXPECT_THAT(body->body, ::testing::Not(HasSubstr(id.substr(0, 8))));
  }

  // Anything but GET is refused, and the server carries on.
  auto fd = testing::ConnectTcp(*listen_port);
  ASSERT_TRUE(fd);
  ASSERT_TRUE(WriteFull(fd->get(), std::string_view("POST /metrics HTTP/1.0\r\n\r\n"), "post"));
  std::string answer(256, '\0');
  ssize_t n = ::read(fd->get(), answer.data(), answer.size());
  ASSERT_GT(n, 0);
  EXPECT_THAT(answer, HasSubstr("405"));
  ScrapeAndCheck(testing::HttpGetTcp(*listen_port, "/metrics"));

  ExitStatus st = celld->Terminate();
  EXPECT_TRUE(st.Success()) << st.ToString() << "\n" << celld->Log();
}

TEST_F(MetricsTest, MetricsListenOffLoopbackIsRefused) {
  auto port = testing::FreeLoopbackPort();
  ASSERT_TRUE(port);
  // Without cgroups: a start that fails this late leaves celld's cgroup subtree behind.
  auto celld = Daemon::Spawn(
      {.argv = testing::CelldArgs(*suite_model_, policies_,
                                  {"--socket", local_.File("c.sock"), "--no-cgroups",
                                   "--metrics-listen", "0.0.0.0:" + std::to_string(*port)}),
       .log_path = local_.File("celld.log")});
  ASSERT_TRUE(celld);
  std::optional<ExitStatus> st = celld->WaitExit(kLongWaitMs);
  ASSERT_TRUE(st) << celld->Log();
  EXPECT_EQ(st->code, 1);
  EXPECT_THAT(celld->Log(), HasSubstr("is not a loopback address"));
  EXPECT_THAT(celld->Log(), HasSubstr("Refusing."));
}

TEST_F(MetricsTest, MetricsAllowRemoteServesOnAnyAddress) {
  auto port = testing::FreeLoopbackPort();
  ASSERT_TRUE(port);
  auto celld =
      Daemon::Spawn({.argv = testing::CelldArgs(
                         *suite_model_, policies_,
                         {"--socket", local_.File("c.sock"), "--no-cgroups", "--metrics-listen",
                          "0.0.0.0:" + std::to_string(*port), "--metrics-allow-remote"}),
                     .log_path = local_.File("celld.log")});
  ASSERT_TRUE(celld);
  ASSERT_TRUE(testing::WaitUntilConnectable(local_.File("c.sock"), kLongWaitMs)) << celld->Log();
  // 0.0.0.0 listens on every address, loopback included.
  auto connection = testing::ConnectTcp(*port);
  ASSERT_TRUE(connection) << connection.error().message();
  auto response = testing::HttpGet(*connection, "/metrics");
  ASSERT_TRUE(response) << response.error().message();
  EXPECT_EQ(response->status_line, "HTTP/1.0 200 OK");
  EXPECT_THAT(response->body, HasSubstr("cellhouse_build_info"));
  EXPECT_EQ(celld->Terminate().code, 0);
}

}  // namespace
}  // namespace cellhouse
