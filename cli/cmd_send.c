/* smtpc send: compose (or take) a message and deliver it. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

int cmd_send(const char *prog, int argc, char **argv)
{
    cli_ctx c;
    memset(&c, 0, sizeof c);
    c.prog = prog;
    c.cmdname = "send";
    c.cmd = CMD_SEND;
    int ex = cli_parse(prog, "send", CMD_SEND, argc, argv, &c.o);
    if (ex) goto out;
    if (c.o.val[O_HELP]) { ex = cmd_help("send", stdout); goto out; }
    if (c.o.pos.n) {
        fprintf(stderr, "%s send: unexpected argument \"%s\" (recipients go after --to)\n", prog, c.o.pos.v[0]);
        ex = EX_USAGE;
        goto out;
    }
    c.json = c.o.val[O_JSON] != NULL;
    if ((ex = cli_ctx_load_config(&c, NULL))) goto out;

    const char *from = cli_get(&c, O_FROM);
    size_t nr = c.o.list[O_TO].n + c.o.list[O_CC].n + c.o.list[O_BCC].n;
    if (!from || nr == 0) {
        fprintf(stderr, "%s send: a sender (--from, or \"from\" in the configuration) and at least "
                        "one --to, --cc or --bcc are required\n(see '%s help send')\n", prog, prog);
        ex = EX_USAGE;
        goto out;
    }
    int bodies = !!c.o.val[O_TEXT] + !!c.o.val[O_TEXT_FILE] + !!c.o.val[O_MESSAGE];
    if (bodies > 1) {
        fprintf(stderr, "%s send: choose one of --text, --text-file and --message\n", prog);
        ex = EX_USAGE;
        goto out;
    }
    if (c.o.val[O_MESSAGE]) {
        static const cli_opt_id composing[] = {O_SUBJECT, O_CC, O_REPLY_TO, O_HTML, O_HTML_FILE,
                                               O_ATTACH, O_INLINE, O_HEADER, O_PRIORITY};
        for (size_t i = 0; i < SMTPC__ARRAY_LEN(composing); i++)
            if (c.o.val[composing[i]]) {
                fprintf(stderr, "%s send: %s cannot be used with --message (the message is sent as is)\n",
                        prog, cli_opt_find_id(composing[i])->name);
                ex = EX_USAGE;
                goto out;
            }
    }
    uint64_t count = 1;
    if (c.o.val[O_COUNT] &&
        (smtpc__parse_u64(c.o.val[O_COUNT], strlen(c.o.val[O_COUNT]), &count) || count < 1 || count > 100000)) {
        fprintf(stderr, "%s send: --count: \"%s\" is not a number from 1 to 100000\n", prog, c.o.val[O_COUNT]);
        ex = EX_USAGE;
        goto out;
    }
    if ((ex = cli_check_address(&c, "--from", from))) goto out;
    cli_list rcpts = {0};
    static const cli_opt_id lists[] = {O_TO, O_CC, O_BCC};
    for (size_t k = 0; k < 3 && !ex; k++) {
        const cli_list *l = &c.o.list[lists[k]];
        for (size_t i = 0; i < l->n && !ex; i++) {
            ex = cli_check_address(&c, cli_opt_find_id(lists[k])->name, l->v[i]);
            if (!ex && cli_list_push(&rcpts, l->v[i])) ex = EX_OSERR;
        }
    }
    cli_delivery d = DELIVER_PICKUP;
    if (!ex && !c.o.val[O_DUMP]) {
        ex = cli_delivery_choose(&c, &d);
        if (!ex) ex = cli_check_supported(&c, d);
    }
    if (!ex && (c.o.val[O_HTML] || c.o.val[O_HTML_FILE] || c.o.val[O_ATTACH] || c.o.val[O_INLINE]))
        ex = cli_check_supported(&c, d); /* --dump too needs the MIME library for these */
    smtpc__buf msg;
    smtpc__buf_init(&msg, 0);
    if (!ex) ex = cli_compose(&c, from, &msg);
    if (!ex && c.o.val[O_DUMP]) {
        if (fwrite(smtpc__buf_ptr(&msg), 1, smtpc__buf_size(&msg), stdout) != smtpc__buf_size(&msg) ||
            fflush(stdout))
            ex = EX_IOERR;
    } else if (!ex) {
        cli_envelope env = {from, rcpts.v, rcpts.n};
        for (uint64_t i = 0; i < count; i++) {
            cli_result r;
            cli_result_init(&r);
            int rc = cli_deliver(&c, d, &env, smtpc__buf_ptr(&msg), smtpc__buf_size(&msg), &r);
            cli_print_result(&c, &r);
            cli_result_free(&r);
            if (rc) ex = cli_exit_code(rc);
        }
    }
    smtpc__buf_free(&msg);
    free(rcpts.v);
out:
    cli_ctx_free(&c);
    return ex;
}
