// `cellmodel quantize`: converts an fp32 llama2.c checkpoint into cellhouse's int8 format, and
// puts the tokenizer beside it, so that `--tokenizer` defaults (FILE.tokenizer) keep working.
#include <sys/stat.h>

#include <cstdio>
#include <string>
#include <variant>
#include <vector>

#include "base/clock.h"
#include "base/io.h"
#include "base/print.h"
#include "base/strings.h"
#include "cli/cellmodel/cli_util.h"
#include "cli/cellmodel/commands.h"
#include "engine/formats/atomic_file.h"
#include "engine/formats/checkpoint.h"
#include "engine/formats/quantize.h"
#include "engine/model.h"
#include "engine/tokenizer/tokenizer.h"

namespace cellhouse::cellmodel {

namespace {

// Tokenizers are a few hundred KiB; anything near this is not one.
constexpr size_t kMaxTokenizerBytes = size_t{64} << 20;

struct QuantizeFlags {
  std::string in;
  std::string out;
  int64_t group_size = 32;
  std::string tokenizer;
  std::string tokenizer_out;
};

bool Exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// The tokenizer to copy: --tokenizer, else IN.tokenizer when it exists, else none.
std::string TokenizerSource(const QuantizeFlags& f, bool explicit_source) {
  if (explicit_source) {
    return f.tokenizer;
  }
  const std::string beside = f.in + ".tokenizer";
  return Exists(beside) ? beside : std::string();
}

// Copies the tokenizer (checked against the model's vocabulary first) atomically.
Status CopyTokenizer(const std::string& from, const std::string& to, int32_t vocab_size) {
  CH_RETURN_IF_ERROR(engine::Tokenizer::Open(from, vocab_size));
  CH_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(from, kMaxTokenizerBytes));
  CH_ASSIGN_OR_RETURN(engine::AtomicFile out, engine::AtomicFile::Create(to, 0644));
  CH_RETURN_IF_ERROR(out.Write(std::as_bytes(std::span(bytes.data(), bytes.size()))));
  return out.Commit();
}

Status Quantize(const QuantizeFlags& f, bool explicit_tokenizer) {
  const int64_t start = MonotonicNanos();
  CH_ASSIGN_OR_RETURN(engine::Model model, engine::Model::Open(f.in));
  const auto* weights = std::get_if<engine::ModelWeights>(&model.weights());
  if (weights == nullptr) {
    return Error("'" + f.in + "' is already quantized (" + model.Describe() +
                 "); quantize the fp32 checkpoint instead");
  }
  const std::string tokenizer = TokenizerSource(f, explicit_tokenizer);
  if (!tokenizer.empty()) {
    // Checked before the long write, so that a wrong tokenizer fails fast.
    CH_RETURN_IF_ERROR(engine::Tokenizer::Open(tokenizer, model.config().vocab_size));
  }
  CH_RETURN_IF_ERROR(engine::WriteQuantizedModel(
      *weights, {.group_size = static_cast<int32_t>(f.group_size)}, f.out));
  const std::string tokenizer_out =
      f.tokenizer_out.empty() ? f.out + ".tokenizer" : f.tokenizer_out;
  if (!tokenizer.empty() && tokenizer != tokenizer_out) {
    CH_RETURN_IF_ERROR(CopyTokenizer(tokenizer, tokenizer_out, model.config().vocab_size));
  }
  CH_ASSIGN_OR_RETURN(engine::Model q8, engine::Model::Open(f.out));
  const size_t fp32_bytes = model.bytes().size();
  const size_t q8_bytes = q8.bytes().size();
  Printf(stderr, "wrote %s (%s: %s, %.1f%% of the fp32 %s) in %.2f s\n", f.out.c_str(),
         q8.Describe().c_str(), FormatBytes(q8_bytes).c_str(),
         100.0 * static_cast<double>(q8_bytes) / static_cast<double>(fp32_bytes),
         FormatBytes(fp32_bytes).c_str(),
         static_cast<double>(MonotonicNanos() - start) / kNanosPerSecond);
  if (tokenizer.empty()) {
    Printf(stderr,
           "no tokenizer at %s.tokenizer, none copied: give `cellmodel run` --tokenizer, or "
           "quantize again with --tokenizer FILE\n",
           f.in.c_str());
  } else if (tokenizer != tokenizer_out) {
    Printf(stderr, "copied tokenizer %s to %s\n", tokenizer.c_str(), tokenizer_out.c_str());
  }
  return Ok();
}

}  // namespace

int QuantizeCommand(const std::vector<std::string>& args) {
  QuantizeFlags f;
  FlagSet flags("cellmodel quantize --in FP32_FILE --out Q8_FILE [--group-size N]",
                "Converts an fp32 llama2.c checkpoint into cellhouse's int8 format (symmetric "
                "int8 groups, one fp32 scale per group; see docs/QUANTIZED_FORMAT.md), written "
                "atomically, and copies the tokenizer to Q8_FILE.tokenizer. Every command and "
                "celld accept either format.");
  flags.String("in", &f.in, "FILE", "fp32 llama2.c checkpoint (required)");
  flags.String("out", &f.out, "FILE", "int8 checkpoint to write (required)");
  flags.Alias('o', "out");
  flags.Int("group-size", &f.group_size, "N",
            "weights per scale: 32 (closer to fp32) or 64 (smaller, faster)");
  flags.String("tokenizer", &f.tokenizer, "FILE",
               "tokenizer to copy (default: FP32_FILE.tokenizer, if it exists)");
  flags.String("tokenizer-out", &f.tokenizer_out, "FILE",
               "where to copy it (default: Q8_FILE.tokenizer)");
  Parsed parsed = ParseFlags(flags, args);
  if (parsed.exit_code) {
    return *parsed.exit_code;
  }
  if (!parsed.positional.empty()) {
    return Fail("quantize", Error("unexpected argument " + Quote(parsed.positional[0])),
                kExitUsage);
  }
  if (f.in.empty() || f.out.empty()) {
    return Fail("quantize", Error("--in FILE and --out FILE are required"), kExitUsage);
  }
  if (!engine::IsQ8GroupSize(f.group_size)) {
    return Fail("quantize", Error("--group-size must be 32 or 64"), kExitUsage);
  }
  if (f.in == f.out) {
    return Fail("quantize", Error("--out must differ from --in"), kExitUsage);
  }
  if (Status s = Quantize(f, flags.IsSet("tokenizer")); !s) {
    return Fail("quantize", s.error(), kExitRuntimeError);
  }
  return kExitOk;
}

}  // namespace cellhouse::cellmodel
