// Defaults that celld and its clients must agree on.
#ifndef CELLHOUSE_IPC_DEFAULTS_H_
#define CELLHOUSE_IPC_DEFAULTS_H_

namespace cellhouse::ipc {

// Where celld listens and cellctl connects when --socket is not given (systemd's
// RuntimeDirectory=cellhouse makes /run/cellhouse).
inline constexpr const char* kDefaultSocketPath = "/run/cellhouse/celld.sock";
// Environment variable that overrides the default for both.
inline constexpr const char* kSocketEnvironmentVariable = "CELLHOUSE_SOCKET";

}  // namespace cellhouse::ipc

#endif  // CELLHOUSE_IPC_DEFAULTS_H_
