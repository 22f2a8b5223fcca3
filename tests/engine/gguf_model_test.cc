// GGUF models as the engine loads them (formats/gguf_model.h, tokenizer/gguf_vocabulary.h,
// Model::Open): the configuration from the metadata, the context cap, every refusal naming the
// key or tensor (unknown architecture with the supported list, missing or misshapen tensors, keys
// of the wrong type, norms not in f32, mixture of experts, YaRN), the vocabulary (SentencePiece
// runs, byte-level BPE is described but refused for generation), and conversations that stop at
// the vocabulary's own end-of-generation id.
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/conversation.h"
#include "engine/formats/gguf.h"
#include "engine/formats/gguf_convert.h"
#include "engine/formats/gguf_model.h"
#include "engine/model.h"
#include "engine/tokenizer/gguf_vocabulary.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/engine/gguf_test_models.h"
#include "tests/engine/test_models.h"
#include "tests/support/test_env.h"

namespace cellhouse::engine {
namespace {

using testing::GgufSpec;
using ::testing::HasSubstr;

// Loads a model from a writer's bytes (kept alive by the caller).
struct Loaded {
  std::vector<std::byte> bytes;
  Result<GgufFile> file = Error("unset");
  Result<GgufWeights> weights = Error("unset");
};
Loaded Load(const GgufWriter& w, int32_t max_context = 0) {
  Loaded l;
  l.bytes = *w.Serialize();
  l.file = GgufFile::Parse(l.bytes, "m.gguf");
  if (l.file) {
    l.weights = LoadGgufWeights(*l.file, {.max_context = max_context});
  } else {
    l.weights = l.file.error();
  }
  return l;
}

std::string Refusal(const GgufWriter& w) {
  Loaded l = Load(w);
  EXPECT_FALSE(l.weights) << "accepted";
  return l.weights ? "" : l.weights.error().message();
}

TEST(GgufModelTest, TheConfigurationComesFromTheMetadata) {
  GgufSpec spec{.arch = "qwen3",
                .head_dim = 24,
                .context = 4096,
                .rope_base = 1e6F,
                .rms_eps = 1e-6F,
                .matrices = TensorType::kQ8_0,
                .tied = false,
                .qk_norm = true};
  spec.dim = 64;
  spec.hidden = 96;
  Loaded l = Load(testing::MakeGgufModel(spec), 512);
  ASSERT_TRUE(l.weights) << l.weights.error().message();
  const ModelConfig& c = l.weights->config;
  EXPECT_EQ(l.weights->architecture, GgufArchitecture::kQwen3);
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.hidden_dim, 96);
  EXPECT_EQ(c.n_heads, 4);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.head_size(), 24);
  EXPECT_EQ(c.q_dim(), 96);
  EXPECT_EQ(c.kv_dim(), 48);
  EXPECT_EQ(c.vocab_size, 300);
  EXPECT_EQ(c.seq_len, 512) << "capped";
  EXPECT_EQ(l.weights->file_context_length, 4096U);
  EXPECT_EQ(c.rope_base, 1e6F);
  EXPECT_EQ(c.rms_eps, 1e-6F);
  EXPECT_EQ(c.rope_style, RopeStyle::kNeox);
  EXPECT_FALSE(c.shared_classifier);
  const GgufLayer& layer = l.weights->layers[1];
  EXPECT_EQ(layer.wq.type, TensorType::kQ8_0);
  EXPECT_EQ(layer.wq.rows, 96);
  EXPECT_EQ(layer.wq.cols, 64);
  EXPECT_EQ(layer.wo.rows, 64);
  EXPECT_EQ(layer.wo.cols, 96);
  EXPECT_EQ(layer.q_norm.size(), 24U);
  EXPECT_TRUE(layer.bq.empty());
  EXPECT_EQ(l.weights->classifier.name, "output.weight");
  EXPECT_EQ(l.weights->token_embedding.data, l.file->FindTensor("token_embd.weight")->data.data())
      << "a view into the file, not a copy";
}

TEST(GgufModelTest, LlamaTiesItsClassifierAndRotatesInterleavedPairs) {
  Loaded l = Load(testing::MakeGgufModel({.arch = "llama"}));
  ASSERT_TRUE(l.weights) << l.weights.error().message();
  EXPECT_TRUE(l.weights->config.shared_classifier);
  EXPECT_EQ(l.weights->classifier.data, l.weights->token_embedding.data);
  EXPECT_EQ(l.weights->config.rope_style, RopeStyle::kInterleaved);
  EXPECT_EQ(l.weights->config.seq_len, 96);
}

TEST(GgufModelTest, RefusalsNameTheKeyOrTensor) {
  auto spec = GgufSpec{.arch = "qwen2", .biases = true};
  {
    GgufWriter w = testing::MakeGgufModel(spec);
    w.SetString("general.architecture", "gpt-neox");
    EXPECT_THAT(Refusal(w), HasSubstr("architecture 'gpt-neox' is not supported (supported: "
                                      "llama, qwen2, qwen3)"));
  }
  {
    GgufWriter w = testing::MakeGgufModel(spec);
    w.Remove("qwen2.block_count");
    EXPECT_THAT(Refusal(w), HasSubstr("the required key 'qwen2.block_count' is missing"));
  }
  {
    GgufWriter w = testing::MakeGgufModel(spec);
    w.SetString("qwen2.embedding_length", "64");
    EXPECT_THAT(Refusal(w), HasSubstr("key 'qwen2.embedding_length' is a string"));
  }
  {
    GgufWriter w = testing::MakeGgufModel(spec);
    w.SetUint32("qwen2.embedding_length", 0);
    EXPECT_THAT(Refusal(w), HasSubstr("key 'qwen2.embedding_length' is 0"));
  }
  {
    GgufWriter w = testing::MakeGgufModel(spec);
    w.RemoveTensor("blk.1.attn_k.bias");
    EXPECT_THAT(Refusal(w), HasSubstr("the tensor 'blk.1.attn_k.bias' is missing"));
  }
  {
    GgufWriter w = testing::MakeGgufModel(spec);
    w.SetUint32("qwen2.feed_forward_length", 100);
    EXPECT_THAT(Refusal(w), HasSubstr("tensor 'blk.0.ffn_gate.weight' (f32 [64, 96]) should be "
                                      "[64, 100] (embedding_length x feed_forward_length)"));
  }
  {
    GgufWriter w = testing::MakeGgufModel(spec);
    w.SetUint32("qwen2.attention.head_count", 5);
    EXPECT_THAT(Refusal(w), HasSubstr("not a multiple of attention.head_count 5"));
  }
  {
    GgufWriter w = testing::MakeGgufModel(spec);
    w.SetUint32("qwen2.expert_count", 8);
    EXPECT_THAT(Refusal(w), HasSubstr("mixture of 8 experts"));
  }
  {
    GgufWriter w = testing::MakeGgufModel(spec);
    w.SetString("qwen2.rope.scaling.type", "yarn");
    EXPECT_THAT(Refusal(w), HasSubstr("'qwen2.rope.scaling.type' is string 'yarn'; supported: "
                                      "none, linear"));
  }
  {
    GgufWriter w = testing::MakeGgufModel({.arch = "qwen3", .qk_norm = false});
    EXPECT_THAT(Refusal(w), HasSubstr("the tensor 'blk.0.attn_q_norm.weight' is missing"));
  }
  {
    GgufWriter w = testing::MakeGgufModel({.arch = "llama"});
    w.RemoveTensor("output_norm.weight");
    w.AddTensor("output_norm.weight", TensorType::kF16, {64}, std::vector<std::byte>(128));
    EXPECT_THAT(Refusal(w), HasSubstr("tensor 'output_norm.weight' (f16 [64]) should be f32"));
  }
  {
    GgufWriter w = testing::MakeGgufModel({.arch = "llama"});
    const std::vector<std::string> short_vocab = {"a", "b"};
    w.SetStringArray("tokenizer.ggml.tokens", short_vocab);
    EXPECT_THAT(Refusal(w), HasSubstr("the vocabulary has 2 tokens but tensor "
                                      "'token_embd.weight' (f32 [64, 300]) has a row per token"));
  }
  {
    GgufWriter w = testing::MakeGgufModel({.arch = "llama"});
    w.SetString("tokenizer.ggml.tokens", "a");
    EXPECT_THAT(Refusal(w), HasSubstr("key 'tokenizer.ggml.tokens' is string 'a', expected an "
                                      "array of string"));
  }
  // Hyperparameters the forward pass cannot use name their key, not an internal field.
  {
    GgufWriter w = testing::MakeGgufModel(spec);
    w.SetUint32("qwen2.block_count", 100'000'000);  // sized nothing before it was refused
    EXPECT_THAT(Refusal(w), HasSubstr("key 'qwen2.block_count' is 100000000: that many layers "
                                      "need at least 900000000 tensors, and the file has"));
  }
  {
    GgufWriter w = testing::MakeGgufModel(spec);
    w.SetFloat32("qwen2.attention.layer_norm_rms_epsilon", 0.0F);
    EXPECT_THAT(Refusal(w), HasSubstr("key 'qwen2.attention.layer_norm_rms_epsilon' is 0.000000, "
                                      "outside (0, 1]"));
  }
  {
    GgufWriter w = testing::MakeGgufModel(spec);
    w.SetFloat32("qwen2.rope.freq_base", -1.0F);
    EXPECT_THAT(Refusal(w), HasSubstr("key 'qwen2.rope.freq_base' is -1.000000, not a positive"));
  }
  {
    GgufWriter w = testing::MakeGgufModel(spec);
    w.SetUint32("qwen2.attention.head_count_kv", 3);
    EXPECT_THAT(Refusal(w), HasSubstr("key 'qwen2.attention.head_count_kv' is 3, which does not "
                                      "divide attention.head_count"));
  }
  {
    GgufWriter w = testing::MakeGgufModel(spec);
    w.SetUint32("qwen2.rope.dimension_count", 7);
    EXPECT_THAT(Refusal(w), HasSubstr("key 'qwen2.rope.dimension_count' is 7 for heads of"));
  }
}

TEST(GgufModelTest, ModelOpenTellsGgufByItsMagicAndCapsTheContext) {
  cellhouse::testing::TempDir dir;
  testing::WriteGgufModelFile({.arch = "qwen2", .context = 2048, .biases = true},
                              dir.File("m.gguf"));
  Result<Model> model = Model::Open(dir.File("m.gguf"), {.max_context = 100});
  ASSERT_TRUE(model) << model.error().message();
  EXPECT_EQ(model->format(), WeightFormat::kGguf);
  EXPECT_EQ(model->kv_precision(), KvPrecision::kF16);
  EXPECT_EQ(model->config().seq_len, 100);
  EXPECT_NE(model->gguf(), nullptr);
  EXPECT_THAT(model->Describe(), HasSubstr("gguf qwen2, dim 64"));
  EXPECT_THAT(model->Describe(), HasSubstr("f32 x"));
  EXPECT_GT(model->ParameterCount(), 300U * 64);
  Result<Model> whole = Model::Open(dir.File("m.gguf"));
  ASSERT_TRUE(whole);
  EXPECT_EQ(whole->config().seq_len, 2048);
  // A GGUF file that is not a model the engine runs is refused as such, naming the file.
  GgufWriter w;
  w.SetString("general.architecture", "bert");
  ASSERT_TRUE(w.WriteFile(dir.File("bert.gguf")));
  Result<Model> bert = Model::Open(dir.File("bert.gguf"));
  ASSERT_FALSE(bert);
  EXPECT_THAT(bert.error().message(), HasSubstr("bert.gguf"));
  EXPECT_THAT(bert.error().message(), HasSubstr("(supported: llama, qwen2, qwen3)"));
}

TEST(GgufVocabularyTest, SentencePieceVocabulariesEncodeWithSpaces) {
  Loaded l = Load(testing::MakeGgufModel({.arch = "llama"}));
  ASSERT_TRUE(l.file);
  const GgufVocabularyInfo info = DescribeGgufVocabulary(*l.file);
  EXPECT_EQ(info.kind, VocabularyKind::kSentencePiece);
  EXPECT_EQ(info.size, 300U);
  EXPECT_FALSE(info.chat_template);
  EXPECT_EQ(info.Describe(), "SentencePiece (llama), 300 tokens");
  Result<Tokenizer> tok = TokenizerFromGguf(*l.file);
  ASSERT_TRUE(tok) << tok.error().message();
  EXPECT_EQ(tok->vocab_size(), 300);
  EXPECT_EQ(tok->Piece(259), "\xE2\x96\x81") << "the vocabulary's own text, U+2581";
  EXPECT_EQ(tok->Decode(-1, 286), " a") << "decoded, U+2581 is a space";
  EXPECT_EQ(tok->bos(), 1);
  EXPECT_TRUE(tok->add_bos());
  EXPECT_TRUE(tok->IsEndOfGeneration(2));
  EXPECT_FALSE(tok->IsEndOfGeneration(1));
  // " " and "a" merge into " a"; "é" falls back to the byte pieces 0xC3 0xA9 (ids 3 + byte).
  EXPECT_EQ(*tok->Encode("a\xC3\xA9", {.add_bos = true}),
            (std::vector<int32_t>{1, 286, 3 + 0xC3, 3 + 0xA9}));
}

TEST(GgufVocabularyTest, SpecialIdsComeFromTheFile) {
  GgufWriter w = testing::MakeGgufModel({.arch = "llama"});
  w.SetUint32("tokenizer.ggml.bos_token_id", 260);
  w.SetUint32("tokenizer.ggml.eos_token_id", 261);
  w.SetUint32("tokenizer.ggml.eot_token_id", 262);
  w.SetBool("tokenizer.ggml.add_bos_token", false);
  Loaded l = Load(w);
  Result<Tokenizer> tok = TokenizerFromGguf(*l.file);
  ASSERT_TRUE(tok) << tok.error().message();
  EXPECT_EQ(tok->bos(), 260);
  EXPECT_FALSE(tok->add_bos());
  EXPECT_TRUE(tok->IsEndOfGeneration(261));
  EXPECT_TRUE(tok->IsEndOfGeneration(262));
  EXPECT_FALSE(tok->IsEndOfGeneration(2));
  w.SetUint32("tokenizer.ggml.eos_token_id", 300);
  Loaded bad = Load(w);
  Result<Tokenizer> refused = TokenizerFromGguf(*bad.file);
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.error().message(),
              HasSubstr("tokenizer.ggml.eos_token_id is 300, outside the 300 pieces"));
}

// The arrays beside the pieces are counted against them before they are decoded.
TEST(GgufVocabularyTest, ArraysOfTheWrongLengthAreRefusedByName) {
  const std::vector<float> two_scores = {0.0F, 1.0F};
  const std::vector<int32_t> two_types = {1, 1};
  for (const char* key : {"tokenizer.ggml.scores", "tokenizer.ggml.token_type"}) {
    GgufWriter w = testing::MakeGgufModel({.arch = "llama"});
    if (std::string_view(key) == "tokenizer.ggml.scores") {
      w.SetFloat32Array(key, two_scores);
    } else {
      w.SetInt32Array(key, two_types);
    }
    Loaded l = Load(w);
    ASSERT_TRUE(l.weights) << "the model itself loads";
    Result<Tokenizer> tok = TokenizerFromGguf(*l.file);
    ASSERT_FALSE(tok) << key;
    EXPECT_THAT(tok.error().message(),
                HasSubstr("key '" + std::string(key) + "' has 2 values for 300 pieces"));
  }
}

TEST(GgufVocabularyTest, ByteLevelBpeIsDescribedAndOtherKindsRefused) {
  GgufWriter w = testing::MakeGgufModel({.arch = "llama"});
  w.SetString("tokenizer.ggml.model", "gpt2");
  w.SetString("tokenizer.ggml.pre", "llama-bpe");
  w.SetString("tokenizer.chat_template", "{{ messages }}");
  Loaded l = Load(w);
  ASSERT_TRUE(l.weights) << "the model itself loads";
  const GgufVocabularyInfo info = DescribeGgufVocabulary(*l.file);
  EXPECT_EQ(info.kind, VocabularyKind::kByteLevelBpe);
  EXPECT_TRUE(info.chat_template);
  EXPECT_EQ(info.Describe(), "byte-level BPE (gpt2, pre llama-bpe), 300 tokens");
  // This generated vocabulary lacks the 256 byte characters a byte-level BPE needs.
  Result<Tokenizer> tok = TokenizerFromGguf(*l.file);
  ASSERT_FALSE(tok);
  EXPECT_THAT(tok.error().message(), HasSubstr("which every byte-level BPE vocabulary needs"));
  w.SetString("tokenizer.ggml.model", "t5");
  Loaded t5 = Load(w);
  EXPECT_THAT(TokenizerFromGguf(*t5.file).error().message(), HasSubstr("'t5' is not supported"));
}

// A conversation on a GGUF model stops at the vocabulary's EOS (here made the likeliest token by
// giving it the largest classifier row), not at llama2.c's BOS.
TEST(GgufVocabularyTest, ConversationsStopAtTheFilesEndOfGeneration) {
  cellhouse::testing::TempDir dir;
  GgufWriter w = testing::MakeGgufModel({.arch = "llama", .tied = false});
  ASSERT_TRUE(w.WriteFile(dir.File("m.gguf")));
  Model model = std::move(*Model::Open(dir.File("m.gguf")));
  Tokenizer tok = std::move(*TokenizerFromGguf(*model.gguf()));
  Conversation chat = std::move(*Conversation::Create(model, tok, 64));
  std::vector<int32_t> seen;
  Result<Conversation::TurnStats> stats =
      chat.Turn("a b", {.max_new_tokens = 40}, [&](int32_t id, std::string_view) {
        seen.push_back(id);
        return true;
      });
  ASSERT_TRUE(stats) << stats.error().message();
  for (int32_t id : seen) {
    EXPECT_NE(id, 2) << "EOS is never emitted";
  }
  EXPECT_EQ(chat.tokens().front(), 1) << "BOS first";
}

// A converted llama2.c model runs as GGUF and, in f32, gives the llama2.c model's greedy text.
TEST(GgufConvertTest, AConvertedModelContinuesAsTheCheckpointDoes) {
  cellhouse::testing::TempDir dir;
  const testing::ModelFiles files = testing::WriteModelFiles(dir, testing::TinyConfig(), 9);
  Model fp32 = std::move(*Model::Open(files.model));
  Tokenizer tok = std::move(*Tokenizer::Open(files.tokenizer, fp32.config().vocab_size));
  auto text = [](const Model& m, const Tokenizer& t) {
    Conversation chat = std::move(*Conversation::Create(m, t, 64));
    std::string out;
    EXPECT_TRUE(
        chat.Turn("Once upon a time", {.max_new_tokens = 30}, [&](int32_t, std::string_view piece) {
          out += piece;
          return true;
        }));
    return out;
  };
  const std::string reference = text(fp32, tok);
  for (GgufFileType type : {GgufFileType::kF32, GgufFileType::kF16, GgufFileType::kQ8_0,
                            GgufFileType::kQ4_0, GgufFileType::kQ4_K_M, GgufFileType::kQ6_K}) {
    const std::string path = dir.File(std::string(GgufFileTypeName(type)) + ".gguf");
    Status st = WriteGgufModel(std::get<ModelWeights>(fp32.weights()), tok, {.type = type}, path);
    ASSERT_TRUE(st) << st.error().message();
    Result<Model> gguf = Model::Open(path);
    ASSERT_TRUE(gguf) << gguf.error().message();
    Result<Tokenizer> gtok = TokenizerFromGguf(*gguf->gguf());
    ASSERT_TRUE(gtok) << gtok.error().message();
    EXPECT_EQ(gtok->vocab_size(), tok.vocab_size());
    for (int32_t id = 0; id < tok.vocab_size(); ++id) {
      // The same text when generated; <unk>, BOS and EOS are control tokens, written as such.
      if (id <= 2) {
        ASSERT_TRUE(gtok->IsControl(id)) << id;
        ASSERT_EQ(gtok->DisplayPiece(id), id == 0 ? "<unk>" : id == 1 ? "<s>" : "</s>");
      } else {
        ASSERT_EQ(gtok->Decode(-1, id), tok.Decode(-1, id)) << id;
      }
    }
    const std::string ours = text(*gguf, *gtok);
    EXPECT_FALSE(ours.empty());
    if (type == GgufFileType::kF32) {
      // Same weights; only the rounding of attention (f16 here) differs.
      EXPECT_EQ(ours.substr(0, 20), reference.substr(0, 20)) << "f32";
    }
  }
  // The type each tensor gets, as llama-quantize chooses.
  EXPECT_EQ(GgufTensorType(GgufFileType::kQ4_K_M, "output", -1, 12, 768), TensorType::kQ6_K);
  EXPECT_EQ(GgufTensorType(GgufFileType::kQ4_K_M, "attn_v", 0, 12, 768), TensorType::kQ6_K);
  EXPECT_EQ(GgufTensorType(GgufFileType::kQ4_K_M, "attn_v", 1, 12, 768), TensorType::kQ4_K);
  EXPECT_EQ(GgufTensorType(GgufFileType::kQ4_K_M, "ffn_down", 3, 12, 2048), TensorType::kQ6_K);
  EXPECT_EQ(GgufTensorType(GgufFileType::kQ4_K_M, "ffn_down", 11, 12, 2048), TensorType::kQ6_K);
  EXPECT_EQ(GgufTensorType(GgufFileType::kQ4_K_M, "attn_q", 3, 12, 288), TensorType::kQ5_0);
  EXPECT_EQ(GgufTensorType(GgufFileType::kQ4_0, "output", -1, 12, 768), TensorType::kQ6_K);
  EXPECT_EQ(GgufTensorType(GgufFileType::kQ4_0, "token_embd", -1, 12, 768), TensorType::kQ4_0);
  EXPECT_EQ(GgufTensorType(GgufFileType::kQ6_K, "attn_q", 0, 12, 288), TensorType::kQ8_0);
}

}  // namespace
}  // namespace cellhouse::engine
