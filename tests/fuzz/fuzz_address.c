/* libFuzzer target: the address list parser, and format/re-parse of every
 * address it accepts (the round trip must hold). */
#include "mime/mime.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096) return 0;
    smtpc_address_list l = {0};
    char eb[256];
    if (smtpc__address_parse_n((const char *)data, size, true, &l, eb, sizeof eb) != 0) return 0;
    for (size_t i = 0; i < l.n; i++) {
        const smtpc_address *a = l.v[i];
        if (strpbrk(a->envelope, "\r\n")) abort();
        for (unsigned flags = 0; flags <= SMTPC_FORMAT_UTF8; flags += SMTPC_FORMAT_UTF8) {
            char *f = smtpc_address_format(a, flags);
            if (!f) abort();
            if (strpbrk(f, "\r\n")) abort();
            smtpc_address *b = NULL;
            if (smtpc_address_parse(&b, f, eb, sizeof eb) != 0) abort();
            if (strcmp(b->envelope, a->envelope) != 0) abort();
            if ((a->display == NULL) != (b->display == NULL)) abort();
            if (a->display && strcmp(a->display, b->display) != 0) abort();
            smtpc_address_free(b);
            free(f);
        }
    }
    smtpc__alist_clear(&l);
    return 0;
}
