/* smtpc — command-line tool. A thin shell over libsmtpc: dispatch, help,
 * and the commands waiting for libraries (probe, queue). */
#include "cli.h"
#include "completion.h"

#include <string.h>

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static void usage_short(FILE *f)
{
    fputs("usage: smtpc send --from ADDR --to ADDR [--subject TEXT] [--text TEXT | --text-file FILE]\n"
          "                  [--server HOST[:PORT] --tls MODE | --pickup-dir DIR] [options]\n"
          "       smtpc probe --server HOST[:PORT] [--tls MODE] [--auth-test]\n"
          "       smtpc queue list|flush|retry [ID]|drop ID|check [--repair] [--outbox DIR]\n"
          "       smtpc sendmail [-t] [-i] [-f FROM] [RCPT...] < message\n"
          "       smtpc config [check] [--account NAME] [--check-password]\n"
          "       smtpc config import-msmtp [FILE]\n"
          "       smtpc bulk --server HOST[:PORT] --dir DIR [--connections K] [options]\n"
          "       smtpc dkim keygen --domain D --selector S --out FILE | dkim verify FILE\n"
          "       smtpc help [send|bulk|probe|queue|sendmail|config|exit]\n"
          "       smtpc --version\n",
          f);
}

int cmd_help(const char *topic, FILE *f)
{
    if (!topic) {
        usage_short(f);
        fputs("\nExamples:\n"
              "  # send a text mail\n"
              "  smtpc send --server smtp.example.org:587 --tls starttls --user me@example.org \\\n"
              "             --password-cmd 'pass show mail' --from me@example.org \\\n"
              "             --to you@example.org --subject 'Hello' --text 'Hi there'\n"
              "  # send with attachments\n"
              "  smtpc send --account work --to you@example.org --subject Report \\\n"
              "             --text-file body.txt --attach report.pdf --attach data.csv\n"
              "  # use as sendmail (cron, mail(1), git send-email): link it or call it\n"
              "  ln -s \"$(command -v smtpc)\" ~/bin/sendmail\n"
              "  printf 'To: you@example.org\\nSubject: hi\\n\\nbody\\n' | smtpc sendmail -t -i\n"
              "  # check a server: greeting, TLS, what it offers; --auth-test checks the login\n"
              "  smtpc probe --server smtp.example.org:587 --tls starttls\n"
              "  # queue offline, flush later\n"
              "  smtpc send --outbox ~/.cache/smtpc/outbox --to you@example.org --text 'later'\n"
              "  smtpc queue flush --outbox ~/.cache/smtpc/outbox --account work\n"
              "\nWith no server configured, send writes to the pickup directory ./outbox.\n"
              "Settings come from flags, then SMTPC_* environment variables, then the\n"
              "configuration file (smtpc-config(5)); exit statuses follow sysexits.h\n"
              "('smtpc help exit'). See smtpc(1).\n",
              f);
        return 0;
    }
    if (!strcmp(topic, "send")) {
        fputs("usage: smtpc send --from ADDR --to ADDR [options]\n"
              "Composes a message from the options (or takes --message FILE as is) and\n"
              "delivers it: to --server, into --pickup-dir, or into --outbox.\n\n", f);
        cli_print_options(f, CMD_SEND);
        fputs("\nNever a password on the command line: --password-env, --password-file,\n"
              "--password-cmd or the configuration file.\n", f);
        return 0;
    }
    if (!strcmp(topic, "bulk")) {
        fputs("usage: smtpc bulk --server HOST[:PORT] --dir DIR [--connections K] [options]\n"
              "Sends every .eml file of DIR over K connections with pipelining. The envelope\n"
              "comes from leading X-Sender:/X-Receiver: lines (removed), else from From: and\n"
              "To:/Cc:/Bcc: (Bcc removed). TLS, AUTH and connection options as smtpc send.\n\n", f);
        cli_print_options(f, CMD_BULK);
        return 0;
    }
    if (!strcmp(topic, "probe")) {
        fputs("usage: smtpc probe --server HOST[:PORT] [options]\n"
              "Connects (TLS per --tls, AUTH when credentials are given), prints the\n"
              "greeting, TLS details, the EHLO capabilities and what they mean, and quits.\n"
              "--auth-test logs in with the credentials without sending mail.\n\n", f);
        cli_print_options(f, CMD_PROBE);
        return 0;
    }
    if (!strcmp(topic, "queue")) {
        fputs("usage: smtpc queue list|flush|retry [ID]|drop ID|check [--repair] [--outbox DIR|URL] [options]\n"
              "       smtpc queue init|stats|worker --outbox postgresql://... [options]\n"
              "Lists the messages waiting in the outbox, sends those that are due (flush),\n"
              "makes one or all due now and brings failed ones back (retry), removes one,\n"
              "or finds (and with --repair removes or moves aside) what a crash left in a\n"
              "directory outbox (check). On PostgreSQL (man smtpc-queue): creates the schema\n"
              "(init), shows the counts and workers (stats), or sends until SIGTERM (worker).\n\n", f);
        cli_print_options(f, CMD_QUEUE);
        return 0;
    }
    if (!strcmp(topic, "sendmail")) {
        fputs("usage: smtpc sendmail [-t] [-i|-oi] [-f FROM] [-F NAME] [-N NOTIFY] [-R RET]\n"
              "                      [-V ENVID] [--account NAME] [--config FILE] [--trace] [--] [RCPT...] < message\n"
              "       (or run smtpc through a link named sendmail)\n"
              "  -t        recipients from To, Cc and Bcc too (Bcc is always removed)\n"
              "  -i, -oi   a line with a single '.' does not end the message\n"
              "  -f, -r    envelope sender; also picks the account whose from matches\n"
              "  -F NAME   full name for the From: header added when the message has none\n"
              "  -N -R -V  DSN notify, return and envelope id\n"
              "Ignored: -bm -B TYPE -oXXX -o X -O X -h N -L TAG -G -m -n -v -U -x\n", f);
        return 0;
    }
    if (!strcmp(topic, "config")) {
        fputs("usage: smtpc config [check] [options]\n"
              "       smtpc config import-msmtp [FILE]\n"
              "Shows the configuration file in use, its accounts, the chosen account's\n"
              "settings and where each comes from (file:line, environment, command line).\n"
              "Secrets are never shown. See smtpc-config(5).\n\n", f);
        cli_print_options(f, CMD_CONFIG);
        return 0;
    }
    if (!strcmp(topic, "exit")) {
        fputs("Exit statuses (sysexits.h):\n"
              "   0  sent (or written)\n"
              "  64  usage error (unknown option, missing value)\n"
              "  65  data error (bad address, bad message)\n"
              "  66  an input file does not exist\n"
              "  68  the server's host name is unknown\n"
              "  69  permanent rejection (5xx), or not supported by the server or this build\n"
              "  70  internal error\n"
              "  74  local I/O error (pickup directory, outbox)\n"
              "  75  temporary failure: 4xx, network, timeout (try again later)\n"
              "  76  protocol error (the server misbehaved), TLS failure\n"
              "  77  authentication failed\n"
              "  78  configuration error\n", f);
        return 0;
    }
    fprintf(stderr, "smtpc help: no help on \"%s\"\n", topic);
    usage_short(stderr);
    return EX_USAGE;
}

int main(int argc, char **argv)
{
    const char *self = argc > 0 ? base_name(argv[0]) : "smtpc";
    if (!strcmp(self, "sendmail")) return cmd_sendmail("sendmail", argc - 1, argv + 1);
    if (argc < 2) { usage_short(stderr); return EX_USAGE; }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("smtpc %s\n", smtpc_version());
        printf("PostgreSQL outbox: %s\n", smtpc_outbox_has_postgresql() ? "yes" : "no (built without libpq)");
        return 0;
    }
    if (!strcmp(cmd, "bulk")) return cmd_bulk("smtpc", argc - 2, argv + 2);
    if (!strcmp(cmd, "send")) return cmd_send("smtpc", argc - 2, argv + 2);
    if (!strcmp(cmd, "probe")) return cmd_probe("smtpc", argc - 2, argv + 2);
    if (!strcmp(cmd, "queue")) return cmd_queue("smtpc", argc - 2, argv + 2);
    if (!strcmp(cmd, "sendmail")) return cmd_sendmail("smtpc sendmail", argc - 2, argv + 2);
    if (!strcmp(cmd, "config")) return cmd_config("smtpc", argc - 2, argv + 2);
    if (!strcmp(cmd, "dkim")) return cmd_dkim("smtpc", argc - 2, argv + 2);
    if (!strcmp(cmd, "completion")) return cmd_completion("smtpc", argc - 2, argv + 2);
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        if (argc > 3) { usage_short(stderr); return EX_USAGE; }
        return cmd_help(argc > 2 ? argv[2] : NULL, stdout);
    }
    fprintf(stderr, "smtpc: unknown command %s\n", cmd);
    usage_short(stderr);
    return EX_USAGE;
}
