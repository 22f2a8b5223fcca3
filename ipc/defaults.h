// Defaults that celld and its clients must agree on.
#ifndef CELLHOUSE_IPC_DEFAULTS_H_
#define CELLHOUSE_IPC_DEFAULTS_H_

namespace cellhouse::ipc {

// Where celld listens and cellctl connects when --socket is not given (systemd's
// RuntimeDirectory=cellhouse makes /run/cellhouse).
inline constexpr const char* kDefaultSocketPath = "/run/cellhouse/celld.sock";
// Environment variable that overrides the default for both.
inline constexpr const char* kSocketEnvironmentVariable = "CELLHOUSE_SOCKET";

// Sampling when a Generate request leaves it unset (api.proto), and cellctl's defaults, so that a
// turn samples the same whoever sends it: temperature 1 (the model's own distribution; 0 is
// greedy) with nucleus sampling at 0.9, as llama2.c's `run`.
inline constexpr float kDefaultTemperature = 1.0F;
inline constexpr float kDefaultTopP = 0.9F;

}  // namespace cellhouse::ipc

#endif  // CELLHOUSE_IPC_DEFAULTS_H_
