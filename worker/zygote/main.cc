// cell-zygote: started once by celld, never by hand. See zygote_main.cc.
#include "worker/zygote/zygote_main.h"

int main(int argc, char** argv) {
  return cellhouse::zygote_runtime::ZygoteMain(
      argc, argv,
      cellhouse::zygote_runtime::ZygoteHooks{
          .wrap_engine = nullptr, .executor = cellhouse::zygote_runtime::GgufExecutorSupport});
}
