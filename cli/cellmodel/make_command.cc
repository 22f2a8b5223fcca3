// `cellmodel make`: writes a deterministic pseudo-random checkpoint and its tokenizer.
#include <cstdio>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/print.h"
#include "base/strings.h"
#include "cli/cellmodel/cli_util.h"
#include "cli/cellmodel/commands.h"
#include "engine/formats/generator.h"

namespace cellhouse::cellmodel {

namespace {

struct MakeFlags {
  std::string preset = "tiny";
  int64_t dim = 0, hidden_dim = 0, layers = 0, heads = 0, kv_heads = 0, vocab = 0, seq_len = 0;
  bool shared = false, separate = false;
  int64_t seed = 1;
  std::string out;
  std::string tokenizer_out;
};

// The preset with every override the command line gave.
Result<engine::ModelConfig> BuildConfig(const MakeFlags& f) {
  CH_ASSIGN_OR_RETURN(engine::ModelConfig c, engine::PresetConfig(f.preset));
  struct Override {
    const char* flag;
    int64_t value;
    int32_t* field;
  };
  for (Override o :
       {Override{"dim", f.dim, &c.dim}, Override{"hidden-dim", f.hidden_dim, &c.hidden_dim},
        Override{"layers", f.layers, &c.n_layers}, Override{"heads", f.heads, &c.n_heads},
        Override{"kv-heads", f.kv_heads, &c.n_kv_heads}, Override{"vocab", f.vocab, &c.vocab_size},
        Override{"seq-len", f.seq_len, &c.seq_len}}) {
    if (o.value == 0) {
      continue;  // the preset's
    }
    if (o.value < 0 || o.value > INT32_MAX) {
      return Error("--" + std::string(o.flag) + " must be in 0.." + std::to_string(INT32_MAX));
    }
    *o.field = static_cast<int32_t>(o.value);
  }
  // Changing the head count of a preset without saying otherwise keeps plain multi-head.
  if (f.heads != 0 && f.kv_heads == 0) {
    c.n_kv_heads = c.n_heads;
  }
  if (f.shared && f.separate) {
    return Error("--shared-classifier and --separate-classifier exclude each other");
  }
  if (f.shared) {
    c.shared_classifier = true;
  }
  if (f.separate) {
    c.shared_classifier = false;
  }
  CH_RETURN_IF_ERROR(c.Validate());
  if (c.vocab_size < engine::kMinGeneratedVocab) {
    return Error("--vocab must be at least " + std::to_string(engine::kMinGeneratedVocab) +
                 " for the generated tokenizer");
  }
  return c;
}

}  // namespace

int MakeCommand(const std::vector<std::string>& args) {
  MakeFlags f;
  std::string presets;
  for (std::string_view p : engine::PresetNames()) {
    presets += (presets.empty() ? "" : ", ") + std::string(p);
  }
  FlagSet flags("cellmodel make [--preset NAME] [shape options] --seed N -o FILE",
                "Writes a llama2.c checkpoint of deterministic pseudo-random weights, and a "
                "matching tokenizer, so a model runs with nothing downloaded.");
  flags.String("preset", &f.preset, "NAME", "starting shape: " + presets);
  flags.Int("dim", &f.dim, "N", "width of the residual stream (0: the preset's)");
  flags.Int("hidden-dim", &f.hidden_dim, "N", "width of the feed-forward layer (0: the preset's)");
  flags.Int("layers", &f.layers, "N", "number of layers (0: the preset's)");
  flags.Int("heads", &f.heads, "N", "query heads (0: the preset's)");
  flags.Int("kv-heads", &f.kv_heads, "N",
            "key/value heads, fewer for grouped-query attention (0: as many as --heads if given, "
            "else the preset's)");
  flags.Int("vocab", &f.vocab, "N", "vocabulary size (0: the preset's)");
  flags.Int("seq-len", &f.seq_len, "N", "maximum context length (0: the preset's)");
  flags.Bool("shared-classifier", &f.shared, "the classifier is the embedding table");
  flags.Bool("separate-classifier", &f.separate, "write a separate classifier matrix");
  flags.Int("seed", &f.seed, "N", "seed of the weights and the tokenizer");
  flags.String("out", &f.out, "FILE", "checkpoint to write (required)");
  flags.Alias('o', "out");
  flags.String("tokenizer-out", &f.tokenizer_out, "FILE",
               "tokenizer to write (default FILE.tokenizer)");
  Parsed parsed = ParseFlags(flags, args);
  if (parsed.exit_code) {
    return *parsed.exit_code;
  }
  if (!parsed.positional.empty()) {
    return Fail("make", Error("unexpected argument " + Quote(parsed.positional[0])), kExitUsage);
  }
  if (f.out.empty()) {
    return Fail("make", Error("-o FILE is required"), kExitUsage);
  }
  if (f.tokenizer_out.empty()) {
    f.tokenizer_out = f.out + ".tokenizer";
  }
  Result<engine::ModelConfig> config = BuildConfig(f);
  if (!config) {
    return Fail("make", config.error(), kExitUsage);
  }

  const int64_t start = MonotonicNanos();
  const auto seed = static_cast<uint64_t>(f.seed);
  if (Status s = engine::WriteModel(*config, seed, f.out); !s) {
    return Fail("make", s.error(), 1);
  }
  if (Status s = engine::WriteTokenizer(config->vocab_size, seed, f.tokenizer_out); !s) {
    return Fail("make", s.error(), kExitRuntimeError);
  }
  Printf(stderr, "wrote %s (%s, %.1f M parameters) and %s in %.2f s\n", f.out.c_str(),
         config->Describe().c_str(), static_cast<double>(config->ParameterCount()) / 1e6,
         f.tokenizer_out.c_str(), static_cast<double>(MonotonicNanos() - start) / kNanosPerSecond);
  return kExitOk;
}

}  // namespace cellhouse::cellmodel
