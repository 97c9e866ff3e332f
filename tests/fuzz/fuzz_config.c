/* Fuzzes the configuration file parser (src/client/config.c) and the
 * account lookups on whatever it accepts. */
#include <smtpc/config.h>

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    smtpc_config *cfg = NULL;
    char err[256];
    int rc = smtpc_config_parse(&cfg, (const char *)data, size, "fuzz", SMTPC_CONFIG_NOENV, err,
                                sizeof err);
    if (rc) {
        if (cfg || !memchr(err, '\0', sizeof err)) abort(); /* untouched out, terminated message */
        return 0;
    }
    static const char *const keys[] = {"server", "from", "password", "timeout", "insecure", "port"};
    const smtpc_account *d = smtpc_config_account(cfg, NULL);
    if (!d) abort();
    for (size_t i = 0; i < smtpc_config_account_count(cfg); i++) {
        const smtpc_account *a = smtpc_config_account_at(cfg, i);
        if (smtpc_config_account(cfg, smtpc_account_name(a)) != a) abort();
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            char src[128];
            const char *v = smtpc_account_get(a, keys[k]);
            const char *s = smtpc_account_source(a, keys[k], src, sizeof src);
            if (!v != !s) abort();
            (void)smtpc_account_get_ms(a, keys[k], 0);
            (void)smtpc_account_get_bool(a, keys[k], false);
        }
    }
    (void)smtpc_config_account_by_from(cfg, "someone@example.org");
    smtpc_config_free(cfg);
    return 0;
}
