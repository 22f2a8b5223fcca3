#include "base/text.h"

namespace cellhouse {

std::string_view PrintablePiece(std::string_view piece) {
  if (piece.size() != 1) return piece;
  auto byte = static_cast<unsigned char>(piece[0]);
  // isprint/isspace in the "C" locale, spelled out so the result never depends on setlocale.
  bool printable = byte >= 0x20 && byte < 0x7F;
  bool space = byte == ' ' || (byte >= '\t' && byte <= '\r');
  return printable || space ? piece : std::string_view();
}

}  // namespace cellhouse
