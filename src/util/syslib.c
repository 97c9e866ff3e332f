/* The default: the system libraries are linked normally and always there.
 * A libsmtpc.so built with SMTPC_LAZY_LIBS links src/lazy/lazy.c, whose
 * strong definition replaces this weak one. */
#include "util/syslib.h"

__attribute__((weak)) int smtpc__syslib_need(smtpc__syslib lib, smtpc__errmsg *err)
{
    (void)lib;
    (void)err;
    return 0;
}
