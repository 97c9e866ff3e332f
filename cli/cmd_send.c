/* smtpc send: compose (or take) a message and deliver it. */
#include "cli.h"

#include <errno.h>
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
    if ((ex = cli_dsn_normalize(&c))) goto out;
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
    if (c.o.val[O_HTML] && c.o.val[O_HTML_FILE]) {
        fprintf(stderr, "%s send: choose one of --html and --html-file\n", prog);
        ex = EX_USAGE;
        goto out;
    }
    if (c.o.val[O_MESSAGE]) {
        static const cli_opt_id composing[] = {O_SUBJECT, O_REPLY_TO, O_HTML, O_HTML_FILE,
                                               O_ATTACH, O_INLINE, O_HEADER, O_PRIORITY};
        for (size_t i = 0; i < CLI_ARRAY_LEN(composing); i++)
            if (c.o.val[composing[i]]) {
                fprintf(stderr, "%s send: %s cannot be used with --message (the message is sent as is)\n",
                        prog, cli_opt_find_id(composing[i])->name);
                ex = EX_USAGE;
                goto out;
            }
    }
    uint64_t count = 1;
    if (c.o.val[O_COUNT] &&
        (cli_parse_u64(c.o.val[O_COUNT], &count) || count < 1 || count > 100000)) {
        fprintf(stderr, "%s send: --count: \"%s\" is not a number from 1 to 100000\n", prog, c.o.val[O_COUNT]);
        ex = EX_USAGE;
        goto out;
    }
    if ((ex = cli_bulk_check(&c))) goto out;
    if (!cli_dkim_signer(&c, &ex) && ex) goto out; /* a bad --dkim-key fails before any connection */
    cli_delivery d = DELIVER_PICKUP;
    if (!c.o.val[O_DUMP]) {
        if ((ex = cli_delivery_choose(&c, &d)) || (ex = cli_check_supported(&c, d))) goto out;
    }
    smtpc_message *m = NULL;
    cli_buf raw, unsub;
    cli_buf_init(&raw, 0);
    cli_buf_init(&unsub, 64 << 10);
    cli_list rcpts = {0};
    const char *env_from = from;
    /* a --message FILE is streamed from the file, never held whole */
    cli_source src = {0};
    src.fd = -1;
    if (c.o.val[O_MESSAGE]) {
        /* sent as is: the envelope is exactly --from and the --to/--cc/--bcc addresses */
        if ((ex = cli_check_address(&c, "--from", from))) goto done;
        static const cli_opt_id lists[] = {O_TO, O_CC, O_BCC};
        for (size_t k = 0; k < 3; k++) {
            const cli_list *l = &c.o.list[lists[k]];
            for (size_t i = 0; i < l->n; i++) {
                if ((ex = cli_check_address(&c, cli_opt_find_id(lists[k])->name, l->v[i]))) goto done;
                if (cli_list_push(&rcpts, l->v[i])) { ex = EX_OSERR; goto done; }
            }
        }
        if (cli_source_file(&src, c.o.val[O_MESSAGE], &raw, CLI_MAX_MESSAGE) < 0) {
            cli_err(&c, "cannot read %s: %s", c.o.val[O_MESSAGE], strerror(errno));
            ex = errno == EFBIG ? EX_DATAERR : EX_NOINPUT;
            goto done;
        }
        /* --list-unsubscribe: its fields go first (cmd_dkim.c) */
        if ((ex = cli_unsub_fields(&c, "1", rcpts.n ? rcpts.v[0] : "", &unsub))) goto done;
        src.head = cli_buf_size(&unsub) ? cli_buf_ptr(&unsub) : NULL;
        src.headlen = cli_buf_size(&unsub);
        src.len += src.headlen;
    } else {
        /* composed: the library parses the addresses ("Name <a@b>", lists, IDN)
         * and gives the envelope */
        if ((ex = cli_compose(&c, from, &m))) goto done;
        if ((ex = cli_unsub_message(&c, m, smtpc_message_rcpt_count(m) ? smtpc_message_rcpt(m, 0) : ""))) goto done;
        env_from = smtpc_message_envelope_from(m);
        for (size_t i = 0; i < smtpc_message_rcpt_count(m); i++)
            if (cli_list_push(&rcpts, smtpc_message_rcpt(m, i))) { ex = EX_OSERR; goto done; }
    }
    if (c.o.val[O_DUMP]) {
        if (m) {
            smtpc_message_writer *w;
            int rc = smtpc_message_writer_new(&w, m, 0);
            if (rc) {
                cli_err(&c, "%s", smtpc_message_errmsg(m));
                ex = cli_exit_code(rc);
                goto done;
            }
            char buf[16384];
            ssize_t n;
            while ((n = smtpc_message_writer_read(w, buf, sizeof buf)) > 0)
                if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n) { n = SMTPC_EIO; break; }
            if (n < 0) {
                cli_err(&c, "%s", smtpc_message_writer_errmsg(w)[0] ? smtpc_message_writer_errmsg(w)
                                                                     : smtpc_strerror((int)n));
                ex = cli_exit_code((int)n);
            }
            smtpc_message_writer_free(w);
        } else {
            cli_source_reader rd;
            cli_source_reader_init(&rd, &src);
            char buf[65536];
            ssize_t n;
            while ((n = cli_source_read(&rd, buf, sizeof buf)) > 0)
                if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n) break;
            if (n < 0) cli_err(&c, "cannot read %s: %s", c.o.val[O_MESSAGE], cli_source_reader_error(&rd));
            if (n != 0) ex = EX_IOERR;
        }
        if (fflush(stdout)) ex = EX_IOERR;
        goto done;
    }
    if (d == DELIVER_SMTP && (count > 1 || c.o.val[O_CONNECTIONS])) {
        /* copies, or K connections: pipelined over smtpc_bulk */
        ex = cli_send_many(&c, env_from, rcpts.v, rcpts.n, m, &src, count);
        goto done;
    }
    if (c.o.val[O_CONNECTIONS] || c.o.val[O_RATE] || c.o.val[O_MAX_PER_CONNECTION]) {
        cli_err(&c, "--connections, --rate and --max-per-connection need SMTP delivery");
        ex = EX_USAGE;
        goto done;
    }
    cli_envelope env = {env_from, rcpts.v, rcpts.n};
    src.msg = m;
    char first_id[512] = "";
    /* --count to a pickup directory or an outbox: a progress line on a terminal */
    cli_progress pg;
    cli_progress_start(&pg, "messages", count, false);
    if (count == 1) pg.on = false;
    for (uint64_t i = 0; i < count; i++) {
        if (m && i == 1 && smtpc_message_message_id(m))
            cli_strlcpy(first_id, smtpc_message_message_id(m), sizeof first_id);
        if (m && i > 0 && first_id[0]) {
            /* each copy is its own message: a repeated Message-ID would be
             * dropped as a duplicate by many receivers */
            const char *at = strrchr(first_id, '@');
            char id[600];
            snprintf(id, sizeof id, "%.*s.%llu%s", at ? (int)(at - first_id) : 0, first_id,
                     (unsigned long long)i, at ? at : "");
            if (at && smtpc_message_set_message_id(m, id)) {
                cli_err(&c, "%s", smtpc_message_errmsg(m));
                ex = EX_SOFTWARE;
                break;
            }
        }
        cli_result r;
        cli_result_init(&r);
        int rc = cli_deliver(&c, d, &env, &src, &r);
        cli_print_result(&c, &r);
        cli_result_free(&r);
        if (rc) ex = cli_exit_code(rc);
        cli_progress_update(&pg, i + 1);
    }
    cli_progress_end(&pg);
done:
    smtpc_message_free(m);
    cli_source_close(&src);
    cli_buf_free(&raw);
    cli_buf_free(&unsub);
    free(rcpts.v);
out:
    cli_ctx_free(&c);
    return ex;
}
