/* Test driver for the SASL mechanisms, so a Python test can run them
 * against another implementation (Cyrus SASL's sample server).
 *
 *   drv_sasl MECH [--user U] [--pass P] [--authzid A] [--token T]
 *
 * Prints "IR <base64>" ("IR -" for none). Then, per stdin line:
 *   "C <base64>"  a challenge  -> "R <rc> <base64 or ->"
 *   "F <base64>"  success (235) with optional data ("F" alone: none) -> "F <rc>"
 * A negative rc is followed by "E <message>". */
#include "engine/sasl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 2) return 64;
    smtpc__sasl_creds c = {0};
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--user")) c.username = argv[i + 1];
        else if (!strcmp(argv[i], "--pass")) c.password = argv[i + 1];
        else if (!strcmp(argv[i], "--authzid")) c.authzid = argv[i + 1];
        else if (!strcmp(argv[i], "--token")) c.oauth_token = argv[i + 1];
        else return 64;
    }
    smtpc__errmsg err = {{0}};
    smtpc__sasl *s = NULL;
    int rc = smtpc__sasl_new(&s, smtpc__sasl_mech_from_name(argv[1]), &c, &err);
    if (rc) {
        printf("E %s\n", err.text);
        return 1;
    }
    smtpc__sasl_line line;
    smtpc__sasl_start(s, &line);
    printf("IR %s\n", line.b64 ? line.b64 : "-");
    fflush(stdout);
    char buf[65536];
    while (fgets(buf, sizeof buf, stdin)) {
        size_t n = strcspn(buf, "\r\n");
        buf[n] = '\0';
        const char *arg = n > 2 ? buf + 2 : "";
        if (buf[0] == 'C') {
            rc = smtpc__sasl_step(s, arg, strlen(arg), &line);
            printf("R %d %s\n", rc, line.b64 ? (line.b64[0] ? line.b64 : "=") : "-");
        } else if (buf[0] == 'F') {
            rc = smtpc__sasl_finish(s, arg[0] ? arg : NULL);
            printf("F %d\n", rc);
        } else {
            continue;
        }
        if (rc < 0) printf("E %s\n", smtpc__sasl_errmsg(s));
        fflush(stdout);
    }
    smtpc__sasl_free(s);
    return 0;
}
