// celld's whole configuration, checked before anything is started or locked: the model and
// tokenizer files can be read, the policy directory loads (every check that does not depend on
// the model), a GPU inventory file parses. So a mistyped --policy-dir is refused in milliseconds,
// not after the zygote has mapped, pre-faulted and locked a model of hundreds of MiB, and before
// any cgroup is touched.
//
//   if (Status st = CheckConfiguration(options); !st) { log(st.error().message()); return 2; }
//
// The model-dependent policy checks (memory against the context) need the model's sizes, which
// the zygote reports; celld makes them when it loads the policies after that, and
// `cellctl policy check --model FILE` makes them without celld.
#ifndef CELLHOUSE_SUPERVISOR_CONFIG_CHECK_H_
#define CELLHOUSE_SUPERVISOR_CONFIG_CHECK_H_

#include "base/result.h"
#include "supervisor/supervisor.h"

namespace cellhouse::supervisor {

// Every problem found, one per line, each naming the flag and ending in what to do.
Status CheckConfiguration(const SupervisorOptions& options);

}  // namespace cellhouse::supervisor

#endif  // CELLHOUSE_SUPERVISOR_CONFIG_CHECK_H_
