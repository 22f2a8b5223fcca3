#include "supervisor/metrics.h"

#include <gtest/gtest.h>

#include "base/strings.h"

namespace cellhouse::supervisor {
namespace {

TEST(MetricsTest, TextFormatIsWellFormed) {
  Metrics m;
  m.sessions_started.Inc({"default"});
  m.sessions_ended.Inc({"default", "oom"}, 2);
  m.admission_refusals.Inc({"memory_budget"});
  m.open_latency.Observe(0.0007);
  m.open_latency.Observe(0.3);
  m.open_latency.Observe(99);
  GaugeSnapshot g;
  g.sessions_active["default"] = 1;
  g.sessions_active["we\"ird\\pol\nicy"] = 0;
  g.weights_mapped_bytes = 1234;
  std::string text = m.Render(g, "0.1.0");
  EXPECT_NE(text.find("cellhouse_sessions_started_total{policy=\"default\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("cellhouse_sessions_ended_total{policy=\"default\",reason=\"oom\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("policy=\"we\\\"ird\\\\pol\\nicy\""), std::string::npos) << text;
  EXPECT_NE(text.find("cellhouse_weights_mapped_bytes 1234\n"), std::string::npos);
  EXPECT_NE(text.find("cellhouse_build_info{version=\"0.1.0\"} 1\n"), std::string::npos);
  // Histogram buckets are cumulative, +Inf equals the count.
  EXPECT_NE(text.find("cellhouse_session_open_duration_seconds_bucket{le=\"+Inf\"} 3\n"),
            std::string::npos);
  EXPECT_NE(text.find("cellhouse_session_open_duration_seconds_count 3\n"), std::string::npos);
  uint64_t last = 0;
  for (std::string_view line : Split(text, '\n')) {
    if (line.empty()) continue;
    if (StartsWith(line, "#")) {
      EXPECT_TRUE(StartsWith(line, "# HELP cellhouse_") || StartsWith(line, "# TYPE cellhouse_"))
          << line;
      continue;
    }
    EXPECT_TRUE(StartsWith(line, "cellhouse_")) << line;
    if (StartsWith(line, "cellhouse_session_open_duration_seconds_bucket")) {
      auto value = ParseUint64(line.substr(line.rfind(' ') + 1), "bucket");
      ASSERT_TRUE(value);
      EXPECT_GE(*value, last);
      last = *value;
    }
  }
}

}  // namespace
}  // namespace cellhouse::supervisor
