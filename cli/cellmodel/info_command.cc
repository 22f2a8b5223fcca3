// `cellmodel info`: a checkpoint's configuration, parameter count, size and chunk count.
#include <cstdio>
#include <string>
#include <vector>

#include "base/print.h"
#include "base/strings.h"
#include "cli/cellmodel/cli_util.h"
#include "cli/cellmodel/commands.h"
#include "worker/engine/model.h"

namespace cellhouse::cellmodel {

namespace {

void PrintJson(const engine::Model& model) {
  const engine::ModelConfig& c = model.config();
  Printf(stdout,
         "{\"path\": %s, \"dim\": %d, \"hidden_dim\": %d, \"n_layers\": %d, \"n_heads\": %d, "
         "\"n_kv_heads\": %d, \"vocab_size\": %d, \"seq_len\": %d, \"shared_classifier\": %s, "
         "\"parameters\": %llu, \"bytes\": %zu, \"chunk_bytes\": %zu, \"chunks\": %zu}\n",
         JsonQuote(model.path()).c_str(), c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads,
         c.vocab_size, c.seq_len, c.shared_classifier ? "true" : "false",
         static_cast<unsigned long long>(c.ParameterCount()), model.bytes().size(),
         engine::kModelChunkBytes, model.ChunkCount());
}

void PrintText(const engine::Model& model) {
  const engine::ModelConfig& c = model.config();
  Printf(stdout, "model:      %s\n", model.path().c_str());
  Printf(stdout, "config:     %s\n", model.Describe().c_str());
  Printf(stdout, "head size:  %d (kv dim %d)\n", c.head_size(), c.kv_dim());
  Printf(stdout, "parameters: %llu (%.1f M)\n", static_cast<unsigned long long>(c.ParameterCount()),
         static_cast<double>(c.ParameterCount()) / 1e6);
  Printf(stdout, "bytes:      %zu (%s)\n", model.bytes().size(),
         FormatBytes(model.bytes().size()).c_str());
  Printf(stdout, "chunks:     %zu of %s\n", model.ChunkCount(),
         FormatBytes(engine::kModelChunkBytes).c_str());
}

}  // namespace

int InfoCommand(const std::vector<std::string>& args) {
  bool json = false;
  FlagSet flags("cellmodel info FILE [--json]",
                "Shows a checkpoint's configuration, parameter count, size in bytes and number "
                "of 16 MiB chunks.");
  flags.Bool("json", &json, "print one JSON object");
  Parsed parsed = ParseFlags(flags, args);
  if (parsed.exit_code) {
    return *parsed.exit_code;
  }
  if (parsed.positional.size() != 1) {
    return Fail("info", Error("expected exactly one FILE; see --help"), kExitUsage);
  }
  Result<engine::Model> model = engine::Model::Open(parsed.positional[0]);
  if (!model) {
    return Fail("info", model.error(), kExitRuntimeError);
  }
  if (json) {
    PrintJson(*model);
  } else {
    PrintText(*model);
  }
  return kExitOk;
}

}  // namespace cellhouse::cellmodel
