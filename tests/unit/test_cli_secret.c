/* The CLI's secret reader (cli/secret.c): the buffer a password or token
 * command's output grows in leaves no copy in the blocks it gives up, and is
 * wiped when freed. The CLI sources are compiled into this test. */
#include "t.h"

#include "../../cli/util.c"
#include "../../cli/secret.c"

/* cli_get without the option table: the flag's value only. */
const char *cli_get(const cli_ctx *c, cli_opt_id id)
{
    return c->o.val[id];
}

static size_t released, released_nonzero;

static void on_release(const void *p, size_t n)
{
    released++;
    for (size_t i = 0; i < n; i++) released_nonzero += ((const uint8_t *)p)[i] != 0;
}

TEST(secure_buf)
{
    uint8_t s[700];
    memset(s, 'S', sizeof s);
    cli_buf_release_hook = on_release;
    released = released_nonzero = 0;
    cli_buf b;
    cli_buf_init_secure(&b, 0);
    CHECK_INT(cli_buf_append(&b, s, 200), 0);
    CHECK_INT(cli_buf_append(&b, s, 700), 0); /* 256 -> 1024: the old block goes */
    CHECK_INT(released, 1);
    CHECK_INT(released_nonzero, 0);
    CHECK_INT(cli_buf_size(&b), 900);
    CHECK_INT(cli_buf_ptr(&b)[899], 'S');
    cli_buf_reset(&b);
    size_t nz = 0;
    for (size_t i = 0; i < 900; i++) nz += b.data[i] != 0;
    CHECK_INT(nz, 0);
    CHECK_INT(cli_buf_append(&b, s, 10), 0);
    cli_buf_free(&b);
    CHECK_INT(released, 2);
    CHECK_INT(released_nonzero, 0);
    CHECK(b.secure && !b.data);
    /* an ordinary buffer reports nothing */
    cli_buf_init(&b, 0);
    CHECK_INT(cli_buf_append(&b, s, 200), 0);
    CHECK_INT(cli_buf_append(&b, s, 700), 0);
    cli_buf_free(&b);
    CHECK_INT(released, 2);
    cli_buf_release_hook = NULL;
}

/* A password command printing a long line: read in 1 KiB pieces, the buffer
 * grows several times; every block it gives back is zeros. */
TEST(password_cmd_output_wiped)
{
    cli_ctx c;
    memset(&c, 0, sizeof c);
    c.o.val[O_PASSWORD_CMD] = "i=0; while [ $i -lt 600 ]; do printf pw0123456; i=$((i+1)); done; echo";
    cli_buf_release_hook = on_release;
    released = released_nonzero = 0;
    char *pw = NULL, err[256];
    const char *src = NULL;
    CHECK_INT(cli_secret(&c, false, &pw, &src, err, sizeof err), 0);
    cli_buf_release_hook = NULL;
    CHECK_STR(src, "password-cmd");
    CHECK(pw && strlen(pw) == 5400 && memcmp(pw, "pw0123456pw", 11) == 0);
    CHECK(released >= 4); /* 256 .. 8192: grown, then freed */
    CHECK_INT(released_nonzero, 0);
    cli_free_secret(pw);
}

int main(void)
{
    RUN(secure_buf);
    RUN(password_cmd_output_wiped);
    T_DONE();
}
