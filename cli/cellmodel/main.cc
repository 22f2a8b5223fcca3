// cellmodel: makes, inspects and runs llama2.c-format models with cellhouse's engine alone (no
// sandbox). See `cellmodel --help`.
#include "cli/cellmodel/commands.h"

int main(int argc, char** argv) { return cellhouse::cellmodel::Main(argc, argv); }
