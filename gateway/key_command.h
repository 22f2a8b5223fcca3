// `cellgate key add|list|remove`: the admin's side of the keys file (keys.h).
//
//   cellgate key add --keys /etc/cellhouse/gateway-keys --tenant alice   # prints the key once
//   cellgate key list --keys FILE
//   cellgate key remove --keys FILE ID | --tenant NAME
#ifndef CELLHOUSE_GATEWAY_KEY_COMMAND_H_
#define CELLHOUSE_GATEWAY_KEY_COMMAND_H_

namespace cellhouse::gateway {

// argv[0] is "key"; returns the exit status.
int RunKeyCommand(int argc, char** argv);

}  // namespace cellhouse::gateway

#endif  // CELLHOUSE_GATEWAY_KEY_COMMAND_H_
