// Text as the command-line tools print it.
#ifndef CELLHOUSE_BASE_TEXT_H_
#define CELLHOUSE_BASE_TEXT_H_

#include <string_view>

namespace cellhouse {

// What llama2.c's safe_printf() prints of a generated piece: the piece itself, except nothing
// for a lone byte that is neither printable nor whitespace (control bytes, and the bytes of a
// UTF-8 sequence the model emitted as separate byte tokens). `cellmodel run` and `cellctl` both
// print through this, so their outputs can be compared byte for byte; the protocol carries the
// raw bytes.
std::string_view PrintablePiece(std::string_view piece);

}  // namespace cellhouse

#endif  // CELLHOUSE_BASE_TEXT_H_
