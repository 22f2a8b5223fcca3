// The generated text on its way to the client: the worker sends raw bytes per token (a
// multi-byte UTF-8 character may be split across pieces, and a model can emit bytes that are not
// UTF-8 at all), JSON needs valid UTF-8, and the client's stop sequences must end the text
// before they appear, even when one spans several pieces. TextStream holds back exactly what it
// must (an incomplete character, or a tail that may begin a stop sequence) and no more, so
// streaming stays token by token.
//
//   TextStream text({"\n\n", "END"});
//   std::string ready = text.Push(piece_bytes);   // emit `ready` now
//   if (text.stopped()) { cancel the generation; finish_reason = "stop"; }
//   ready = text.Finish();                        // at the end of the turn: what was held back
//
// celld's worker matches the stop sequences itself (Generate.stop) and never sends them; the
// gateway matches them again here as a backstop for a backend that does not, and cancels the turn.
#ifndef CELLHOUSE_GATEWAY_TEXT_STREAM_H_
#define CELLHOUSE_GATEWAY_TEXT_STREAM_H_

#include <string>
#include <string_view>
#include <vector>

namespace cellhouse::gateway {

// Appends the valid UTF-8 prefix of `*pending` + `bytes` to `out`: ill-formed sequences become
// U+FFFD (one per maximal ill-formed subpart), an incomplete sequence at the end stays in
// `*pending`. With `final`, an incomplete tail becomes U+FFFD too.
void AppendValidUtf8(std::string_view bytes, std::string* pending, std::string* out, bool final);

class TextStream {
 public:
  explicit TextStream(std::vector<std::string> stop) : stop_(std::move(stop)) {}

  // Takes raw bytes; returns the text that can be emitted now.
  std::string Push(std::string_view bytes);
  // The end of the turn: returns what was held back (nothing after a stop sequence matched).
  std::string Finish();
  // True once a stop sequence matched: the text ended just before it; ignore further pieces.
  bool stopped() const { return stopped_; }

 private:
  // Emits what of held_ can no longer be part of a stop sequence.
  std::string Release();

  std::vector<std::string> stop_;
  std::string pending_bytes_;  // an incomplete UTF-8 sequence
  std::string held_;           // valid text that may begin a stop sequence
  bool stopped_ = false;
};

}  // namespace cellhouse::gateway

#endif  // CELLHOUSE_GATEWAY_TEXT_STREAM_H_
