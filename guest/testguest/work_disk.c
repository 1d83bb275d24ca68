#include "user.h"
NORETURN void work_disk(u32 cpu) { (void)cpu; upanic("disk: not yet"); }
