#include "user.h"
NORETURN void work_cpuid(void) { upanic("cpuid: not yet"); }
