// `cellmodel convert`: writes a llama2.c checkpoint and its tokenizer as a GGUF file (llama
// architecture, SentencePiece vocabulary) in one of the tensor types people download, for
// benchmarks, tests and other GGUF runtimes (engine/formats/gguf_convert.h).
#include <cstdio>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "base/clock.h"
#include "base/print.h"
#include "base/strings.h"
#include "cli/cellmodel/cli_util.h"
#include "cli/cellmodel/commands.h"
#include "engine/formats/gguf_convert.h"
#include "engine/model.h"
#include "engine/tokenizer/tokenizer.h"

namespace cellhouse::cellmodel {

namespace {

struct ConvertFlags {
  std::string in;
  std::string out;
  std::string type = "F16";
  std::string tokenizer;
  std::string name = "cellhouse";
};

Status Convert(const ConvertFlags& f, engine::GgufFileType type) {
  const int64_t start = MonotonicNanos();
  CH_ASSIGN_OR_RETURN(engine::Model model, engine::Model::Open(f.in));
  const auto* weights = std::get_if<engine::ModelWeights>(&model.weights());
  if (weights == nullptr) {
    return Error("'" + f.in + "' is " + std::string(engine::WeightFormatName(model.format())) +
                 "; convert the fp32 llama2.c checkpoint instead");
  }
  const std::string tokenizer_path = f.tokenizer.empty() ? f.in + ".tokenizer" : f.tokenizer;
  CH_ASSIGN_OR_RETURN(engine::Tokenizer tokenizer,
                      engine::Tokenizer::Open(tokenizer_path, model.config().vocab_size));
  CH_RETURN_IF_ERROR(
      engine::WriteGgufModel(*weights, tokenizer, {.type = type, .name = f.name}, f.out));
  // Read back, as any runtime will: the file must parse and load.
  CH_ASSIGN_OR_RETURN(engine::Model gguf, engine::Model::Open(f.out));
  const double seconds = static_cast<double>(MonotonicNanos() - start) / 1e9;
  Printf(stdout, "wrote %s: %s, %s in %.1f s\n", f.out.c_str(), gguf.Describe().c_str(),
         FormatBytes(gguf.bytes().size()).c_str(), seconds);
  return Ok();
}

}  // namespace

int ConvertCommand(const std::vector<std::string>& args) {
  ConvertFlags f;
  FlagSet flags("cellmodel convert --in CKPT.bin --out FILE.gguf --type TYPE [--tokenizer FILE]",
                "Writes an fp32 llama2.c checkpoint and its tokenizer as a GGUF file (llama "
                "architecture, SentencePiece vocabulary) that GGUF runtimes such as llama.cpp "
                "load. TYPE: F32, F16, Q8_0, Q4_0, Q4_K_M (Q4_K with Q6_K for the classifier and "
                "some attn_v/ffn_down, as llama-quantize mixes them) or Q6_K.");
  flags.String("in", &f.in, "FILE", "llama2.c fp32 checkpoint (required)");
  flags.String("out", &f.out, "FILE", "GGUF file to write (required)");
  flags.String("type", &f.type, "TYPE", "F32, F16, Q8_0, Q4_0, Q4_K_M or Q6_K");
  flags.String("tokenizer", &f.tokenizer, "FILE", "llama2.c tokenizer (default: IN.tokenizer)");
  flags.String("name", &f.name, "TEXT", "general.name of the model");
  Parsed parsed = ParseFlags(flags, args);
  if (parsed.exit_code) {
    return *parsed.exit_code;
  }
  if (!parsed.positional.empty()) {
    return Fail("convert", Error("unexpected argument " + Quote(parsed.positional[0])), kExitUsage);
  }
  if (f.in.empty() || f.out.empty()) {
    return Fail("convert", Error("--in and --out are required; see --help"), kExitUsage);
  }
  std::optional<engine::GgufFileType> type = engine::ParseGgufFileType(f.type);
  if (!type) {
    return Fail(
        "convert",
        Error("--type " + Quote(f.type) + " is not one of F32, F16, Q8_0, Q4_0, Q4_K_M, Q6_K"),
        kExitUsage);
  }
  if (Status s = Convert(f, *type); !s) {
    return Fail("convert", s.error(), kExitRuntimeError);
  }
  return kExitOk;
}

}  // namespace cellhouse::cellmodel
