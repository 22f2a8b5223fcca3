// `cellmodel run`: generates text from a prompt with the engine alone, printing what llama2.c's
// `run` prints, so outputs can be compared with the reference implementation.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "base/print.h"
#include "base/strings.h"
#include "base/text.h"
#include "cli/cellmodel/cli_util.h"
#include "cli/cellmodel/commands.h"
#include "engine/conversation.h"
#include "engine/forward.h"
#include "engine/kernels/kernels.h"
#include "engine/kernels/type_kernels.h"
#include "engine/tokenizer/gguf_vocabulary.h"

namespace cellhouse::cellmodel {

namespace {

struct RunFlags {
  std::string model;
  std::string tokenizer;
  std::string prompt;
  int64_t steps = 256;
  int64_t max_tokens = 0;
  double temperature = 1.0;
  double top_p = 0.9;
  int64_t seed = 0;
  int64_t threads = 1;
  int64_t ctx_size = 0;
  std::string kernel = "auto";
};

Result<engine::MatVecKernel> ParseKernel(const std::string& name) {
  for (engine::MatVecKernel k : {engine::MatVecKernel::kAuto, engine::MatVecKernel::kOpenBlas,
                                 engine::MatVecKernel::kAvx2, engine::MatVecKernel::kAvx512}) {
    if (engine::MatVecKernelName(k) == name) {
      return k;
    }
  }
  return Error("--kernel: unknown kernel " + Quote(name) + " (auto, openblas, avx2, avx512)");
}

void PrintPiece(std::string_view piece) { WriteAndFlush(stdout, PrintablePiece(piece)); }

void PrintRates(const engine::Conversation::TurnStats& stats) {
  const double prefill_s = static_cast<double>(stats.prefill_ns) / 1e9;
  const double decode_s = static_cast<double>(stats.decode_ns) / 1e9;
  Printf(stderr, "prefill: %d tokens in %.1f ms, %.1f tokens/s\n", stats.prompt_tokens,
         prefill_s * 1e3, prefill_s > 0 ? stats.prompt_tokens / prefill_s : 0.0);
  // Between the first and the last generated token there are generated - 1 forward passes.
  const int decoded = std::max(0, stats.generated_tokens - 1);
  Printf(stderr, "decode: %d tokens in %.1f ms, %.1f tokens/s (stop: %s)\n", stats.generated_tokens,
         decode_s * 1e3, decode_s > 0 ? decoded / decode_s : 0.0,
         std::string(engine::StopReasonName(stats.stop)).c_str());
}

// Runs with validated flags; errors here are runtime errors.
Status Run(const RunFlags& f, engine::MatVecKernel kernel, bool by_steps) {
  CH_ASSIGN_OR_RETURN(
      engine::Model model,
      engine::Model::Open(f.model, {.max_context = static_cast<int32_t>(f.ctx_size)}));
  // A GGUF file carries its vocabulary; llama2.c and int8 models have a tokenizer file.
  CH_ASSIGN_OR_RETURN(engine::Tokenizer tokenizer,
                      model.gguf() != nullptr
                          ? engine::TokenizerFromGguf(*model.gguf())
                          : engine::Tokenizer::Open(f.tokenizer, model.config().vocab_size));
  const int32_t seq_len = model.config().seq_len;
  // llama2.c: steps counts positions including the prompt; 0 or more than seq_len means seq_len.
  const int32_t steps = f.steps <= 0 || f.steps > seq_len ? seq_len : static_cast<int32_t>(f.steps);
  CH_ASSIGN_OR_RETURN(std::vector<int32_t> prompt,
                      tokenizer.Encode(f.prompt, {.add_bos = tokenizer.add_bos()}));
  const int32_t context = by_steps ? steps : seq_len;
  if (std::cmp_greater(prompt.size(), context)) {
    return Error("the prompt is " + std::to_string(prompt.size()) + " tokens, more than the " +
                 std::to_string(context) + " positions available");
  }
  CH_ASSIGN_OR_RETURN(engine::Conversation chat,
                      engine::Conversation::Create(model, tokenizer, context, {.matvec = kernel}));
  // llama2.c prints the prompt's pieces as it feeds them, then the generated ones.
  for (size_t i = 1; i < prompt.size(); ++i) {
    PrintPiece(tokenizer.Decode(prompt[i - 1], prompt[i]));
  }
  const engine::Conversation::TurnOptions options{
      .max_new_tokens = by_steps ? context : static_cast<int32_t>(f.max_tokens),
      .temperature = static_cast<float>(f.temperature),
      .top_p = static_cast<float>(f.top_p),
      .seed = static_cast<uint64_t>(f.seed)};
  CH_ASSIGN_OR_RETURN(engine::Conversation::TurnStats stats,
                      chat.Turn(f.prompt, options, [](int32_t, std::string_view piece) {
                        PrintPiece(piece);
                        return true;
                      }));
  Printf(stdout, "%s", "\n");
  // The conversation chose its kernels as SelectKernels does; int8 models use the int8 ones.
  std::string kernel_name = std::string(engine::MatVecKernelName(chat.matvec_kernel()));
  if (model.format() == engine::WeightFormat::kQ8) {
    kernel_name = std::string(engine::Q8KernelName(engine::SelectKernels(kernel).q8_kind));
    kernel_name += " (int8)";
  } else if (model.format() == engine::WeightFormat::kGguf) {
    kernel_name = std::string(
        engine::KernelIsaName(engine::TypeKernelIsa(engine::SelectKernels(chat.matvec_kernel()))));
    kernel_name += " (gguf type kernels)";
  }
  Printf(stderr, "kernel: %s, context %d of %d (%s KV cache)\n", kernel_name.c_str(),
         chat.context_used(), chat.context_length(),
         std::string(engine::KvPrecisionName(model.kv_precision())).c_str());
  PrintRates(stats);
  return Ok();
}

}  // namespace

int RunCommand(const std::vector<std::string>& args) {
  RunFlags f;
  FlagSet flags("cellmodel run --model FILE [--tokenizer FILE] --prompt TEXT [options]",
                "Generates text from a prompt and prints the prompt followed by the generated "
                "text, as llama2.c's run does; prefill and decode speeds go to stderr. No "
                "sandbox: this is the engine alone.");
  flags.String("model", &f.model, "FILE",
               "model: llama2.c fp32, cellhouse int8, or GGUF (llama, qwen2, qwen3) (required)");
  flags.String("tokenizer", &f.tokenizer, "FILE",
               "tokenizer (default: FILE.tokenizer; a GGUF file has its own vocabulary)");
  flags.Int("ctx-size", &f.ctx_size, "N",
            "longest context, at most the model's (0: the model's own; GGUF files may say 128K)");
  flags.String("prompt", &f.prompt, "TEXT", "text to continue");
  flags.Int("steps", &f.steps, "N",
            "positions including the prompt, as llama2.c counts them "
            "(0: the model's seq_len)");
  flags.Int("max-tokens", &f.max_tokens, "N", "new tokens to generate (instead of --steps)");
  flags.Double("temperature", &f.temperature, "T", "0 for greedy decoding");
  flags.Double("top-p", &f.top_p, "P", "nucleus sampling mass (0 or 1: off)");
  flags.Int("seed", &f.seed, "S", "random seed (same seed, same text)");
  flags.Int("threads", &f.threads, "N",
            "OpenBLAS threads (prefill; decode too with --kernel openblas)");
  flags.String("kernel", &f.kernel, "NAME",
               "decode kernel: auto, openblas, avx2, avx512 (for an int8 model: the portable, "
               "AVX2 and AVX-512 VNNI int8 kernels)");
  Parsed parsed = ParseFlags(flags, args);
  if (parsed.exit_code) {
    return *parsed.exit_code;
  }
  if (!parsed.positional.empty()) {
    return Fail("run", Error("unexpected argument " + Quote(parsed.positional[0])), kExitUsage);
  }
  if (f.model.empty()) {
    return Fail("run", Error("--model FILE is required"), kExitUsage);
  }
  if (f.tokenizer.empty()) {
    f.tokenizer = f.model + ".tokenizer";
  }
  if (flags.IsSet("steps") && flags.IsSet("max-tokens")) {
    return Fail("run", Error("--steps and --max-tokens exclude each other"), kExitUsage);
  }
  if (f.max_tokens < 0 || f.max_tokens > INT32_MAX || f.steps < 0 || f.steps > INT32_MAX) {
    return Fail("run", Error("--steps and --max-tokens must be in 0..2^31-1"), kExitUsage);
  }
  if (f.ctx_size < 0 || f.ctx_size > INT32_MAX) {
    return Fail("run", Error("--ctx-size must be in 0..2^31-1"), kExitUsage);
  }
  if (f.threads < 1 || f.threads > 1024) {
    return Fail("run", Error("--threads must be in 1..1024"), kExitUsage);
  }
  Result<engine::MatVecKernel> kernel = ParseKernel(f.kernel);
  if (!kernel) {
    return Fail("run", kernel.error(), kExitUsage);
  }
  engine::SetBlasThreads(static_cast<int>(f.threads));
  if (Status s = Run(f, *kernel, !flags.IsSet("max-tokens")); !s) {
    return Fail("run", s.error(), kExitRuntimeError);
  }
  return kExitOk;
}

}  // namespace cellhouse::cellmodel
