/* smtpc command line: shared declarations between the CLI's files.
 *
 *   main.c      dispatch (subcommands, argv[0] "sendmail"), help
 *   args.c      the option table and the parser
 *   settings.c  flags over environment over configuration file; delivery choice
 *   output.c    exit statuses, the one-line and JSON reports, JSON escaping
 *   compose.c   building a message from flags with the MIME library; reading files
 *   deliver.c   pickup / smtp (smtpc_client) / outbox delivery into a cli_result
 *   secret.c    passwords and tokens from env, file, command
 *   trace.c     --trace / --trace-body on stderr (timestamps, body tap)
 *   progress.c  the progress line on a terminal's stderr
 *   hints.c     what to do about a failure
 *   cmd_*.c     the subcommands */
#ifndef SMTPC_CLI_H
#define SMTPC_CLI_H

#include <smtpc/smtpc.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <strings.h>
#include <sys/types.h>
#include <sysexits.h>

/* ---- small helpers (util.c): the CLI uses only the public headers ------------- */
#define CLI_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
/* A growable byte buffer with a hard limit: data[off .. len) is live;
 * appending past limit fails with SMTPC_ELIMIT (0 = no limit). */
typedef struct cli_buf {
    uint8_t *data;
    size_t off, len, cap, limit;
    bool secure; /* cli_buf_init_secure */
} cli_buf;
void cli_buf_init(cli_buf *b, size_t limit);
/* For secrets (a password or token read from a command, a file): growth
 * copies into a new block and wipes the old one, compaction wipes the tail
 * it vacates, reset and free wipe. Stays secure after cli_buf_free. */
void cli_buf_init_secure(cli_buf *b, size_t limit);
/* Tests only: called with each block a secure buffer gives back, after the
 * wipe and before free(). */
extern void (*cli_buf_release_hook)(const void *p, size_t n);
void cli_buf_free(cli_buf *b);
void cli_buf_free_secure(cli_buf *b); /* wipes the memory first */
void cli_buf_reset(cli_buf *b);
int cli_buf_reserve(cli_buf *b, size_t extra);
int cli_buf_append(cli_buf *b, const void *p, size_t n);
int cli_buf_append_str(cli_buf *b, const char *s);
int cli_buf_printf(cli_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline size_t cli_buf_size(const cli_buf *b) { return b->len - b->off; }
static inline const uint8_t *cli_buf_ptr(const cli_buf *b)
{
    return b->data ? b->data + b->off : (const uint8_t *)"";
}
/* Copies at most size-1 bytes and NUL-terminates; returns strlen(src). */
size_t cli_strlcpy(char *dst, const char *src, size_t size);
bool cli_has_ctl(const char *s); /* a byte < 0x20 or 0x7f */
/* A whole non-negative decimal number (no sign, blanks or junk; no overflow): 0 or -1. */
int cli_parse_u64(const char *s, uint64_t *out);
void cli_free_secret(char *s); /* wipes and frees; NULL is a no-op */
/* Length of the valid UTF-8 sequence at s[0..n) (1..4), or 0 when the
 * bytes there are not UTF-8 (overlong, surrogate, truncated, stray). */
size_t cli_utf8_len(const unsigned char *s, size_t n);
/* What the text at s[0..n) starts with, for escaping server text; *len is
 * the bytes it covers (1 for an invalid byte). */
enum { CLI_TEXT_OK, CLI_TEXT_C0 /* < 0x20, 0x7f */, CLI_TEXT_C1 /* U+0080..U+009F */,
       CLI_TEXT_INVALID /* not UTF-8 */ };
int cli_text_class(const unsigned char *s, size_t n, size_t *len);
/* The one escaping of server text for the terminal: copies s[0..n) with C0
 * controls and DEL escaped (\r \n \xNN), C1 controls as \u0080..\u009f (a
 * terminal takes U+009B as CSI) and bytes that are not UTF-8 as \xNN:
 * server text never drives the terminal. Always NUL-terminates; a sequence
 * that does not fit is left out whole. (JSON strings: cli_json_str, with
 * the same classes.) */
void cli_escape_into(char *dst, size_t dstsz, const char *s, size_t n);
int64_t cli_now_ms(void); /* CLOCK_MONOTONIC */

/* ---- options -------------------------------------------------------------- */
typedef enum cli_opt_id {
    O_SERVER, O_TLS, O_FROM, O_TO, O_CC, O_BCC, O_REPLY_TO, O_SUBJECT, O_TEXT, O_TEXT_FILE,
    O_HTML, O_HTML_FILE, O_ATTACH, O_INLINE, O_HEADER, O_PRIORITY, O_MESSAGE, O_DUMP,
    O_PICKUP_DIR, O_OUTBOX, O_DELIVERY, O_EHLO_NAME,
    O_USER, O_PASSWORD_ENV, O_PASSWORD_FILE, O_PASSWORD_CMD, O_OAUTH_TOKEN_CMD, O_AUTH,
    O_ALLOW_PLAINTEXT_AUTH,
    O_CA_FILE, O_CA_PATH, O_PIN, O_CERT, O_KEY, O_INSECURE, O_TLS_MIN, O_TLS_MAX,
    O_TLS_STRICT_VERSION, O_TLS_SERVER_NAME,
    O_GREETING_TIMEOUT, O_TIMEOUT, O_CONNECT_TIMEOUT, O_PROXY, O_BIND, O_IPV4, O_IPV6,
    O_ACCOUNT, O_CONFIG, O_JSON, O_TRACE, O_TRACE_BODY, O_COUNT, O_CONNECTIONS,
    O_DSN_NOTIFY, O_DSN_RET, O_ENVID, O_CHECK_PASSWORD, O_AUTH_TEST, O_HELP,
    O_RATE, O_MAX_PER_CONNECTION, O_QUIET, O_DIR, O_RCPT_ALLOWFAILS, O_LEASE,
    O_REPAIR,
    O_DKIM_KEY, O_DKIM_SELECTOR, O_DKIM_DOMAIN, O_DKIM_ALGORITHM, O_DKIM_HEADERS, O_LIST_UNSUBSCRIBE,
    O__COUNT
} cli_opt_id;

typedef enum cli_cmd {
    CMD_SEND = 1u << 0,
    CMD_PROBE = 1u << 1,
    CMD_QUEUE = 1u << 2,
    CMD_SENDMAIL = 1u << 3,
    CMD_CONFIG = 1u << 4,
    CMD_BULK = 1u << 5
} cli_cmd;

typedef enum { OK_FLAG, OK_VALUE, OK_LIST } cli_opt_kind;

typedef struct cli_opt_def {
    const char *name;    /* "--server", "-4" */
    cli_opt_id id;
    cli_opt_kind kind;
    unsigned cmds;       /* cli_cmd bits where the option is accepted */
    const char *cfgkey;  /* the configuration key it overrides, or NULL */
    const char *meta;    /* "HOST[:PORT]" */
    const char *help;
} cli_opt_def;

typedef struct cli_list {
    const char **v;
    size_t n, cap;
} cli_list;

typedef struct cli_opts {
    const char *val[O__COUNT]; /* last value given; "1" for a flag */
    cli_list list[O__COUNT];   /* every value, in order (OK_LIST) */
    cli_list pos;              /* positional arguments */
} cli_opts;

extern const cli_opt_def cli_opt_table[];
extern const size_t cli_opt_table_len;

/* Parses argv (after the subcommand) for cmd. Returns 0 or EX_USAGE after
 * printing a message naming the offending argument. */
int cli_parse(const char *prog, const char *cmdname, cli_cmd cmd, int argc, char **argv,
              cli_opts *o);
void cli_opts_free(cli_opts *o);
int cli_list_push(cli_list *l, const char *s);
/* Frees a list whose strings it owns, and the strings. */
void cli_list_free_strings(cli_list *l);
const cli_opt_def *cli_opt_find_id(cli_opt_id id);
/* Prints the options of cmd (for help). */
void cli_print_options(FILE *f, cli_cmd cmd);

/* ---- context: flags over environment over file ---------------------------- */
typedef enum { DELIVER_PICKUP, DELIVER_SMTP, DELIVER_OUTBOX } cli_delivery;

typedef struct cli_ctx {
    const char *prog;         /* "smtpc" or "sendmail" (for messages) */
    const char *cmdname;
    cli_cmd cmd;
    cli_opts o;
    smtpc_config *cfg;
    const smtpc_account *acct;
    bool json;
} cli_ctx;

/* Loads the configuration (--config, else the search) and picks the
 * account (--account, else $SMTPC_ACCOUNT, else by from_hint when not NULL,
 * else the default). Returns 0 or an exit status after printing why. */
int cli_ctx_load_config(cli_ctx *c, const char *from_hint);
void cli_ctx_free(cli_ctx *c);
/* The effective value of an option: the flag, else the account's key. */
const char *cli_get(const cli_ctx *c, cli_opt_id id);
bool cli_get_bool(const cli_ctx *c, cli_opt_id id);
/* Which delivery applies; returns 0 or EX_USAGE/EX_CONFIG after printing. */
int cli_delivery_choose(const cli_ctx *c, cli_delivery *out);
void cli_err(const cli_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- results and output --------------------------------------------------- */
typedef struct cli_rcpt {
    const char *address; /* borrowed */
    int code;
    char enhanced[16];
    char *text;
    bool accepted;
} cli_rcpt;

typedef struct cli_result {
    bool ok;
    const char *delivery;  /* "smtp", "pickup", "outbox" */
    char server[320];      /* HOST:PORT */
    const char *tls;       /* "none", "starttls", "tls" or NULL */
    const char *auth;      /* mechanism or NULL (may point to auth_buf) */
    char auth_buf[32];
    bool tls_used;         /* the connection was encrypted: the three below are set */
    char tls_version[16];  /* "TLSv1.3" */
    char tls_cipher[64];
    bool tls_verified;
    cli_rcpt *rcpts;
    size_t nrcpts;
    int final_code;
    char final_enhanced[16];
    char *final_text;
    char *queue_id;
    char *path;
    int err;               /* SMTPC_E*, 0 when ok */
    char errmsg[1024];
} cli_result;

void cli_result_init(cli_result *r);
void cli_result_free(cli_result *r);
/* SMTPC_ELIMIT is both the caller's data over a limit (a body line over 998
 * octets, a message over SIZE, a command too long: exit 65) and a server
 * reply over the reply parser's limits (a line, the line count or the size
 * of a reply: the server broke the protocol, exit 76). The reply parser's
 * messages are the ones that say "server reply": those are SMTPC_EPROTO
 * here. Any other code is returned as is. */
int cli_err_origin(int err, const char *msg);
/* Sets r->err (through cli_err_origin) and r->errmsg (printf-style), returns
 * the code set. */
int cli_result_fail(cli_result *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* "queued as X" / "id=X" in a final reply, or NULL (malloc'ed). */
char *cli_queue_id_from_text(const char *text);

/* The sysexits.h status for an SMTPC_E* code. */
int cli_exit_code(int smtpc_err);
const char *cli_error_class_name(int smtpc_err);
/* Prints the report for one message: a line (or JSON object) on stdout; on
 * failure the error on stderr too (unless JSON). */
void cli_print_result(const cli_ctx *c, const cli_result *r);
/* Appends s as a JSON string literal (with quotes): escapes ", \, C0 and C1
 * control characters (\uXXXX); invalid UTF-8 bytes become U+FFFD. */
int cli_json_str(cli_buf *b, const char *s);

/* ---- messages ------------------------------------------------------------- */
/* Reads a whole file ("-" = stdin) with a limit; 0 or -1 with errno. */
int cli_slurp(const char *path, cli_buf *out, size_t limit);
#define CLI_MAX_MESSAGE ((size_t)512 << 20)
/* Builds the message from --from/--to/--subject/--text/--attach... with the
 * MIME library; returns 0 or an exit status after printing why. */
int cli_compose(const cli_ctx *c, const char *from, smtpc_message **out);
/* Checks an address given on the command line; prints and returns EX_DATAERR. */
int cli_check_address(const cli_ctx *c, const char *what, const char *addr);

/* A read callback (smtpc_read_cb) over bytes in memory, e.g. for smtpc_message_load. */
typedef struct cli_mem_reader { const char *p; size_t len, off; } cli_mem_reader;
ssize_t cli_mem_read(void *ud, void *buf, size_t len);

/* ---- delivery ------------------------------------------------------------- */
typedef struct cli_envelope {
    const char *from;
    const char *const *rcpts;
    size_t nrcpts;
} cli_envelope;
/* What is delivered: a composed message (written afresh for each delivery,
 * with the server's 8BITMIME/SMTPUTF8 in mind) or raw bytes sent as is. */
typedef struct cli_source {
    smtpc_message *msg;
    const void *mem;
    size_t len;
    /* raw bytes streamed from a regular file (smtpc send --message FILE):
     * len bytes of fd from offset base, read afresh at each delivery, never
     * held whole; eightbit = some byte has the high bit (decided by cli_source_file) */
    bool file;
    int fd;
    bool eightbit;
    uint64_t base;
    /* headlen bytes at head delivered first, before mem or the file (sendmail's
     * added fields and header block in front of its spooled body); len counts
     * them too; for a file, eightbit covers them too */
    const void *head;
    size_t headlen;
} cli_source;
/* Some byte of p[0..n) has the high bit (BODY=8BITMIME for raw bytes). */
bool cli_has_8bit(const void *p, size_t n);
/* Opens path for a raw source: a regular file (also "-" when standard input
 * is one, from its current offset) is streamed (its size taken by fstat, one
 * chunked pass for 8-bit bytes); anything else (a pipe) is read into buf as before. At most limit bytes (errno EFBIG beyond). 0, or -1
 * with errno. cli_source_close() closes the file. */
int cli_source_file(cli_source *src, const char *path, cli_buf *buf, size_t limit);
void cli_source_close(cli_source *src);
/* The reader over a raw source: call cli_source_reader_init before each
 * delivery; cli_source_read has the smtpc_read_cb signature. */
typedef struct cli_source_reader { const cli_source *src; size_t off; const char *err; } cli_source_reader;
void cli_source_reader_init(cli_source_reader *rd, const cli_source *src);
ssize_t cli_source_read(void *ud, void *buf, size_t len);
/* Back to the first byte (the source is read with pread: always 0). */
int cli_source_rewind(void *ud);
/* After a failed delivery: why the file could not be read, or NULL. */
const char *cli_source_reader_error(const cli_source_reader *rd);
/* Delivers src; fills r. Returns SMTPC_OK or the SMTPC_E* code (also in r). */
int cli_deliver(const cli_ctx *c, cli_delivery d, const cli_envelope *env, const cli_source *src,
                cli_result *r);
/* Writes src as a pickup file or an outbox entry through smtpc_client
 * (smtpc_client_set_delivery; a pickup file signed with --dkim-key);
 * r->queue_id = the file name / entry id. In deliver.c. */
int cli_deliver_stored(const cli_ctx *c, smtpc_delivery how, const char *dir, const cli_envelope *env,
                       const cli_source *src, cli_result *r);
/* r->path = dir/<sub><name><ext> (unset when out of memory). In deliver.c. */
void cli_result_path(cli_result *r, const char *dir, const char *sub, const char *name, const char *ext);
/* Queues src in the outbox (--outbox DIR); r->queue_id = the entry id. In cmd_queue.c. */
int cli_deliver_outbox(const cli_ctx *c, const cli_envelope *env, const cli_source *src, cli_result *r);
/* Where to and how: host and port (--server, or the configuration's server
 * and port; the default port by the TLS mode) and the TLS mode (--tls, else
 * the library's default policy for that port and credentials). Fills
 * r->server and r->tls. 0 or SMTPC_E* (also in r). */
int cli_server_choose(const cli_ctx *c, cli_result *r, char *host, size_t hostlen, uint16_t *port,
                      smtpc_tls_mode *mode);
/* Every connection setting (flags over configuration) in one new
 * smtpc_conn_opts, the OAuth token from tok when --oauth-token-cmd is
 * given (NULL: a provider running the command, again after a refusal). Fills r->server and r->tls. 0 or SMTPC_E* (also in r). */
int cli_conn_opts(const cli_ctx *c, cli_result *r, smtpc_token_cb tok, void *tok_ud, smtpc_conn_opts **out);
/* smtpc probe's session (sends go through smtpc_client): the options of
 * cli_conn_opts (and --trace);
 * smtpc_session_open(s, NULL, 0) connects to the server chosen there.
 * Fills r->server and r->tls. 0 or SMTPC_E* (also in r). */
int cli_session_open(const cli_ctx *c, cli_result *r, smtpc_session **out);
/* After smtpc_session_open: r->tls ("tls", "starttls", "none") and r->auth
 * from what the session used. */
void cli_result_security(cli_result *r, const smtpc_session *s);
/* Wipes the OAuth token kept for the session's token provider. */
void cli_security_done(void);
/* Options the chosen delivery needs but this build cannot do yet. Returns 0
 * or EX_UNAVAILABLE after printing which option. */
int cli_check_supported(const cli_ctx *c, cli_delivery d);

/* The password (token = false: password-env, password-file, password-cmd,
 * then the configuration's password) or OAuth token (oauth-token-cmd):
 * first line, malloc'ed, free with cli_free_secret. *source names where
 * it came from. SMTPC_ENOTFOUND when none is configured; SMTPC_ECONFIG and
 * err when the source fails. */
int cli_secret(const cli_ctx *c, bool token, char **out, const char **source, char *err,
               size_t errlen);

/* ---- trace, progress, hints ------------------------------------------------ */
typedef struct cli_progress {
    bool on, bytes, drawn;
    const char *what;
    uint64_t done, total;
    int64_t start_ms, last_ms;
} cli_progress;
/* Starts a progress line (drawn only when stderr is a terminal, and only
 * for work that lasts). */
void cli_progress_start(cli_progress *p, const char *what, uint64_t total, bool bytes);
void cli_progress_update(cli_progress *p, uint64_t done);
void cli_progress_end(cli_progress *p);
/* Erases the bar on screen (before other stderr output). */
void cli_progress_clear(void);

/* One trace line on stderr: "HH:MM:SS.mmm PREFIX line", escaped. */
void cli_trace_line(const char *prefix, const char *line, size_t len);
/* What a trace shows of the message (the library's SMTPC_TRACE_BODY
 * lines): its header lines, the rest only with --trace-body (full), else
 * counted and noted once after it. */
typedef struct cli_trace {
    bool full, in_header, noted;
    uint64_t hidden; /* body bytes not shown */
} cli_trace;
void cli_trace_start(cli_trace *t, bool full);
/* The trace callback (smtpc_session_set_trace, smtpc_client_set_trace):
 * ud is a cli_trace, or NULL (a session without message lines). */
void cli_trace_cb(void *ud, smtpc_trace_dir dir, const char *line, size_t len);
/* After the send: the note on the body not shown, if not given yet. */
void cli_trace_end(cli_trace *t);

/* Checks --dsn-notify/--dsn-ret/--envid and spells them as RFC 3461 does.
 * 0 or EX_USAGE after printing why. */
int cli_dsn_normalize(cli_ctx *c);

/* probe: the EHLO keywords in plain words (text on stdout) or as
 * ,"features":{...} appended to js (json). */
void cli_probe_features(smtpc_session *s, bool json, cli_buf *js);

/* What to do about r's failure (a sentence), or NULL. */
const char *cli_hint(const cli_result *r);


/* ---- subcommands ---------------------------------------------------------- */
int cmd_send(const char *prog, int argc, char **argv);
/* cmd_bulk.c: smtpc bulk --dir, and smtpc send's copies (--count N,
 * --connections K) over smtpc_bulk. */
int cmd_bulk(const char *prog, int argc, char **argv);
/* Checks --connections, --max-per-connection and --rate: 0 or EX_USAGE after printing. */
int cli_bulk_check(const cli_ctx *c);
/* Sends count copies of m (composed: each copy after the first with its own
 * Message-ID) or of src's bytes, to from/rcpts over --connections K (default
 * 1) pipelined connections; one report per message. Returns the exit status. */
int cli_send_many(cli_ctx *c, const char *from, const char *const *rcpts, size_t nrcpts,
                  smtpc_message *m, const cli_source *src, uint64_t count);
int cmd_probe(const char *prog, int argc, char **argv);
int cmd_queue(const char *prog, int argc, char **argv);
/* queue init|worker|stats of a PostgreSQL outbox (cmd_queue_pg.c); exit status. */
int cli_queue_init(cli_ctx *c, smtpc_outbox *ob);
int cli_queue_worker(cli_ctx *c, smtpc_outbox *ob);
int cli_queue_stats(cli_ctx *c, smtpc_outbox *ob);
bool cli_queue_is_pg(const char *outbox); /* postgresql:// or postgres:// */
/* --connections (1..kmax) and the connection settings, for flush and worker (cmd_queue.c); exit status. */
int cli_queue_conn_opts(cli_ctx *c, uint64_t kmax, uint64_t *k, smtpc_conn_opts **o);
int cmd_sendmail(const char *prog, int argc, char **argv);
int cmd_config(const char *prog, int argc, char **argv);
int cmd_help(const char *topic, FILE *f);

/* ---- DKIM (cmd_dkim.c) ------------------------------------------------------ */
/* The signer of --dkim-key/--dkim-selector/--dkim-domain/--dkim-algorithm/
 * --dkim-headers (else the account's dkim-* keys), built once: NULL with
 * *ex 0 when nothing is to be signed, NULL with *ex an exit status after
 * printing why. */
const smtpc_dkim_signer *cli_dkim_signer(const cli_ctx *c, int *ex);
/* Signs what cl / b sends when a signer is configured: 0 or an exit status. */
int cli_dkim_client(const cli_ctx *c, smtpc_client *cl);
int cli_dkim_bulk(const cli_ctx *c, smtpc_bulk *b);
int cmd_dkim(const char *prog, int argc, char **argv);
/* --list-unsubscribe URL...: "<url>, <url>" into out ({id} and {rcpt}
 * replaced, percent-encoded), *one_click when one is https:. 0 or EX_USAGE
 * (printed). */
int cli_unsub_value(const cli_ctx *c, const char *id, const char *rcpt, cli_buf *out, bool *one_click);
/* Adds List-Unsubscribe (and List-Unsubscribe-Post) to m; {id}: its
 * Message-ID. 0 or an exit status (printed). */
int cli_unsub_message(const cli_ctx *c, smtpc_message *m, const char *rcpt);
/* The same as header lines (CRLF) appended to out, for a raw message. */
int cli_unsub_fields(const cli_ctx *c, const char *id, const char *rcpt, cli_buf *out);
/* The same put in front of a message in *data (malloc'ed, replaced); {id}:
 * path's file name without .eml. 0 or an exit status (printed). */
int cli_unsub_prepend(const cli_ctx *c, const char *path, const char *rcpt, char **data, size_t *len);

#endif
