// Helpers for building and naming protocol messages, so every component words errors the same.
//
//   api::Response r = MakeError(api::ADMISSION_REFUSED, "memory budget exhausted ...");
#ifndef CELLHOUSE_IPC_MESSAGES_H_
#define CELLHOUSE_IPC_MESSAGES_H_

#include <string>
#include <string_view>

#include "ipc/api.pb.h"

namespace cellhouse::ipc {

api::Response MakeError(api::ErrorCode code, std::string_view message,
                        api::SessionOutcome outcome = api::OUTCOME_UNSPECIFIED);
api::Response MakeAck(std::string_view message);

// "open", "generate", ... for logs and errors; "empty" when no field of the oneof is set.
std::string_view RequestKindName(const api::Request& request);
// The stable name of an error code ("ADMISSION_REFUSED").
std::string ErrorCodeName(api::ErrorCode code);
// A short human phrase for an outcome ("memory limit exceeded").
std::string_view OutcomeName(api::SessionOutcome outcome);

// Session ids and tokens are shown to people as lowercase hex.
std::string IdToHex(std::string_view bytes);

}  // namespace cellhouse::ipc

#endif  // CELLHOUSE_IPC_MESSAGES_H_
