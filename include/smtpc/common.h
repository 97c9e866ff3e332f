/* smtpc — common definitions shared by every public header. */
#ifndef SMTPC_COMMON_H
#define SMTPC_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(SMTPC_BUILDING)
#define SMTPC_API __attribute__((visibility("default")))
#else
#define SMTPC_API
#endif

#define SMTPC_VERSION_MAJOR 0
#define SMTPC_VERSION_MINOR 1
#define SMTPC_VERSION_PATCH 0
#define SMTPC_VERSION_STRING "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version string, e.g. "0.1.0". */
SMTPC_API const char *smtpc_version(void);

#ifdef __cplusplus
}
#endif
#endif
