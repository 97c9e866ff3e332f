/* Pickup directory: the writer's envelope block cannot be extended by the
 * message (X-Sender/X-Receiver fields renamed), its temporaries are never
 * "*.eml", and the reader parses exactly the writer's block. */
#include "t.h"

#include <smtpc/smtpc.h>

#include <dirent.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

typedef struct feed {
    const char *text;
    size_t pos, piece;
    const char *dir;  /* when set: the directory is listed during the write */
    size_t listed, temporaries;
    bool temp_ok;
} feed;

static ssize_t feed_cb(void *ud, void *buf, size_t len)
{
    feed *f = ud;
    if (f->dir && f->pos == 0) {
        char **paths = NULL;
        size_t n = 99;
        if (smtpc_pickup_list(f->dir, &paths, &n, NULL, 0) == 0) f->listed = n;
        smtpc_pickup_list_free(paths, n);
        DIR *d = opendir(f->dir);
        struct dirent *e;
        f->temp_ok = true;
        while (d && (e = readdir(d))) {
            size_t l = strlen(e->d_name);
            if (e->d_name[0] != '.' || !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            f->temporaries++;
            if (strncmp(e->d_name, ".tmp-", 5) || l < 5 || strcmp(e->d_name + l - 5, ".part")) f->temp_ok = false;
        }
        if (d) closedir(d);
    }
    size_t left = strlen(f->text) - f->pos, n = left < len ? left : len;
    if (f->piece && n > f->piece) n = f->piece;
    memcpy(buf, f->text + f->pos, n);
    f->pos += n;
    return (ssize_t)n;
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    return buf;
}

static void write_raw(const char *path, const char *text)
{
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        T_FAILF("cannot write %s", path);
        return;
    }
    fputs(text, fp);
    fclose(fp);
}

static const char hostile[] =
    "X-Receiver: attacker@evil.example\n"
    "x-sender : boss@example.org\r\n"
    "X-Receiver:\tsecond@evil.example\r"
    "Subject: hi\n"
    "X-Receiver-Note: not an envelope name\n"
    "X-Sendery: nor this\n"
    "\n"
    "X-Receiver: a body line stays\n";
static const char hostile_written[] =
    "X-Sender: a@example.org\r\n"
    "X-Receiver: b@example.org\r\n"
    "X-Original-Receiver: attacker@evil.example\r\n"
    "X-Original-sender : boss@example.org\r\n"
    "X-Original-Receiver:\tsecond@evil.example\r\n"
    "Subject: hi\r\n"
    "X-Receiver-Note: not an envelope name\r\n"
    "X-Sendery: nor this\r\n"
    "\r\n"
    "X-Receiver: a body line stays\r\n";

TEST(writer_renames_envelope_fields_of_the_message)
{
    const char *rcpts[] = {"b@example.org"};
    /* whole, and one octet at a time (a name split across reads) */
    for (size_t piece = 0; piece < 2; piece++) {
        feed f = {hostile, 0, piece, NULL, 0, 0, false};
        char *path = NULL, err[256];
        CHECK_INT(smtpc_pickup_write(tmpdir, "a@example.org", rcpts, 1, feed_cb, &f, &path, err, sizeof err), 0);
        CHECK_STR(slurp(path), hostile_written);
        /* and a reader sees the envelope the caller gave, nothing more */
        smtpc_pickup_msg *m = NULL;
        CHECK_INT(smtpc_pickup_read(path, &m, err, sizeof err), 0);
        CHECK_STR(smtpc_pickup_msg_sender(m), "a@example.org");
        CHECK_INT(smtpc_pickup_msg_rcpt_count(m), 1);
        CHECK_STR(smtpc_pickup_msg_rcpt(m, 0), "b@example.org");
        CHECK(smtpc_pickup_msg_rcpt(m, 1) == NULL);
        size_t len = 0;
        const char *data = smtpc_pickup_msg_data(m, &len);
        CHECK_INT(len, strlen(hostile_written) - 52);
        CHECK_STR(data, hostile_written + 52);
        smtpc_pickup_msg_free(m);
        unlink(path);
        free(path);
    }
    /* a message that ends inside a field name keeps it */
    feed f = {"X-Rec", 0, 1, NULL, 0, 0, false};
    char *path = NULL;
    CHECK_INT(smtpc_pickup_write(tmpdir, "a@example.org", rcpts, 1, feed_cb, &f, &path, NULL, 0), 0);
    CHECK_STR(slurp(path), "X-Sender: a@example.org\r\nX-Receiver: b@example.org\r\nX-Rec");
    unlink(path);
    free(path);
}

TEST(writer_temporaries_are_never_eml)
{
    char dir[300];
    snprintf(dir, sizeof dir, "%s/tmpnames", tmpdir);
    mkdir(dir, 0700);
    const char *rcpts[] = {"b@example.org"};
    feed f = {"Subject: x\n\nbody\n", 0, 0, dir, 99, 0, false};
    char *path = NULL;
    CHECK_INT(smtpc_pickup_write(dir, "a@example.org", rcpts, 1, feed_cb, &f, &path, NULL, 0), 0);
    /* while being written: one temporary, hidden and ".part"; a reader sees nothing */
    CHECK_INT(f.temporaries, 1);
    CHECK(f.temp_ok);
    CHECK_INT(f.listed, 0);
    /* then: the .eml, and no temporary left */
    char **paths = NULL;
    size_t n = 0;
    CHECK_INT(smtpc_pickup_list(dir, &paths, &n, NULL, 0), 0);
    CHECK_INT(n, 1);
    if (n == 1) CHECK_STR(paths[0], path);
    smtpc_pickup_list_free(paths, n);
    unlink(path);
    free(path);
    CHECK_INT(rmdir(dir), 0);
}

TEST(list_skips_temporaries_and_sorts)
{
    char dir[300], p[400];
    snprintf(dir, sizeof dir, "%s/list", tmpdir);
    mkdir(dir, 0700);
    static const char *const files[] = {"b.EML", ".tmp-1.part", ".tmp-2.eml", ".hidden.eml", "c.txt", "a.eml", "eml"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        write_raw(p, "x");
    }
    snprintf(p, sizeof p, "%s/sub.eml", dir);
    mkdir(p, 0700);
    char **paths = NULL;
    size_t n = 0;
    CHECK_INT(smtpc_pickup_list(dir, &paths, &n, NULL, 0), 0);
    CHECK_INT(n, 2);
    char want[400];
    snprintf(want, sizeof want, "%s/a.eml", dir);
    if (n == 2) CHECK_STR(paths[0], want);
    snprintf(want, sizeof want, "%s/b.EML", dir);
    if (n == 2) CHECK_STR(paths[1], want);
    smtpc_pickup_list_free(paths, n);
    smtpc_pickup_list_free(NULL, 0);
    rmdir(p);
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    CHECK_INT(rmdir(dir), 0);
    char err[256] = "";
    CHECK_INT(smtpc_pickup_list(dir, &paths, &n, err, sizeof err), SMTPC_ENOTFOUND);
    CHECK(strstr(err, dir) != NULL);
    CHECK_INT(smtpc_pickup_list(NULL, &paths, &n, NULL, 0), SMTPC_EINVAL);
}

TEST(reader_takes_only_the_writers_block)
{
    static const struct {
        const char *file, *sender, *rcpts, *data;
    } cases[] = {
        /* LF line ends, brackets, the null sender */
        {"X-Sender: <>\nx-receiver:  <b@example.org> \nX-Receiver: c@example.org\nSubject: s\n\nbody\n",
         "", "b@example.org,c@example.org", "Subject: s\n\nbody\n"},
        /* a second X-Sender is the message's */
        {"X-Sender: a@x\r\nX-Receiver: b@x\r\nX-Sender: evil@x\r\nX-Receiver: evil@x\r\n\r\n",
         "a@x", "b@x", "X-Sender: evil@x\r\nX-Receiver: evil@x\r\n\r\n"},
        /* an empty recipient was not written by the writer */
        {"X-Sender: a@x\r\nX-Receiver: b@x\r\nX-Receiver: \r\nX-Receiver: c@x\r\n",
         "a@x", "b@x", "X-Receiver: \r\nX-Receiver: c@x\r\n"},
        /* no block: the header fields are the caller's to read */
        {"From: a@x\r\nTo: b@x\r\n\r\nhi\r\n", NULL, "", "From: a@x\r\nTo: b@x\r\n\r\nhi\r\n"},
        {"X-Sender: a@x\r\nSubject: no recipients\r\n", NULL, "", "X-Sender: a@x\r\nSubject: no recipients\r\n"},
        {"X-Receiver: b@x\r\nX-Sender: a@x\r\n", NULL, "", "X-Receiver: b@x\r\nX-Sender: a@x\r\n"},
        {"X-Sender: a@x\r\nX-Receiver: b@x", NULL, "", "X-Sender: a@x\r\nX-Receiver: b@x"}, /* unterminated */
        {"", NULL, "", ""},
    };
    char p[400];
    snprintf(p, sizeof p, "%s/r.eml", tmpdir);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_raw(p, cases[i].file);
        smtpc_pickup_msg *m = NULL;
        char err[256] = "";
        int rc = smtpc_pickup_read(p, &m, err, sizeof err);
        if (rc) {
            T_FAILF("case %zu: %d %s", i, rc, err);
            continue;
        }
        const char *s = smtpc_pickup_msg_sender(m);
        if (cases[i].sender ? !s || strcmp(s, cases[i].sender) : s != NULL)
            T_FAILF("case %zu: sender %s", i, s ? s : "(null)");
        char got[256] = "";
        for (size_t k = 0; k < smtpc_pickup_msg_rcpt_count(m); k++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", k ? "," : "", smtpc_pickup_msg_rcpt(m, k));
        if (strcmp(got, cases[i].rcpts)) T_FAILF("case %zu: rcpts %s", i, got);
        size_t len = 0;
        const char *d = smtpc_pickup_msg_data(m, &len);
        if (len != strlen(cases[i].data) || strcmp(d, cases[i].data)) T_FAILF("case %zu: data \"%s\"", i, d);
        smtpc_pickup_msg_free(m);
    }
    unlink(p);
    smtpc_pickup_msg *m = (smtpc_pickup_msg *)&m;
    char err[256] = "";
    CHECK_INT(smtpc_pickup_read(p, &m, err, sizeof err), SMTPC_ENOTFOUND);
    CHECK(m == (smtpc_pickup_msg *)&m);
    CHECK(strstr(err, p) != NULL);
    CHECK_INT(smtpc_pickup_read(tmpdir, &m, err, sizeof err), SMTPC_EIO); /* a directory */
    CHECK(strstr(err, "not a regular file") != NULL);
    CHECK_INT(smtpc_pickup_read(NULL, &m, NULL, 0), SMTPC_EINVAL);
    smtpc_pickup_msg_free(NULL);
    CHECK(smtpc_pickup_msg_sender(NULL) == NULL);
    CHECK_INT(smtpc_pickup_msg_rcpt_count(NULL), 0);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/smtpc-test-pickup-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(writer_renames_envelope_fields_of_the_message);
    RUN(writer_temporaries_are_never_eml);
    RUN(list_skips_temporaries_and_sorts);
    RUN(reader_takes_only_the_writers_block);
    rmdir(tmpdir);
    T_DONE();
}
