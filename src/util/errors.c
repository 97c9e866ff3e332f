#include <smtpc/errors.h>

typedef struct {
    int code;
    const char *name;
    const char *text;
    smtpc_error_class cls;
} err_row;

static const err_row rows[] = {
    {SMTPC_OK, "SMTPC_OK", "success", SMTPC_CLASS_OK},
    {SMTPC_ENOMEM, "SMTPC_ENOMEM", "out of memory", SMTPC_CLASS_TRANSIENT},
    {SMTPC_EINVAL, "SMTPC_EINVAL", "invalid argument", SMTPC_CLASS_CONFIG},
    {SMTPC_ENETWORK, "SMTPC_ENETWORK", "network error", SMTPC_CLASS_TRANSIENT},
    {SMTPC_ETIMEDOUT, "SMTPC_ETIMEDOUT", "operation timed out", SMTPC_CLASS_TRANSIENT},
    {SMTPC_ECANCELED, "SMTPC_ECANCELED", "operation canceled", SMTPC_CLASS_CANCELED},
    {SMTPC_ETLS, "SMTPC_ETLS", "TLS error", SMTPC_CLASS_CONFIG},
    {SMTPC_EPROTO, "SMTPC_EPROTO", "protocol violation by the server", SMTPC_CLASS_PROTOCOL},
    {SMTPC_EAUTH, "SMTPC_EAUTH", "authentication failed", SMTPC_CLASS_CONFIG},
    {SMTPC_ETEMPFAIL, "SMTPC_ETEMPFAIL", "temporary failure (4xx): try again later",
     SMTPC_CLASS_TRANSIENT},
    {SMTPC_EPERMFAIL, "SMTPC_EPERMFAIL", "permanent failure (5xx)", SMTPC_CLASS_PERMANENT},
    {SMTPC_EUNSUPPORTED, "SMTPC_EUNSUPPORTED", "not supported by the server", SMTPC_CLASS_CONFIG},
    {SMTPC_ENOHOST, "SMTPC_ENOHOST", "host name could not be resolved", SMTPC_CLASS_TRANSIENT},
    {SMTPC_EIO, "SMTPC_EIO", "I/O error", SMTPC_CLASS_TRANSIENT},
    {SMTPC_ECLOSED, "SMTPC_ECLOSED", "connection closed by the server", SMTPC_CLASS_TRANSIENT},
    {SMTPC_EAGAIN, "SMTPC_EAGAIN", "operation would block", SMTPC_CLASS_TRANSIENT},
    {SMTPC_EBUSY, "SMTPC_EBUSY", "operation in progress", SMTPC_CLASS_CONFIG},
    {SMTPC_ESTATE, "SMTPC_ESTATE", "not valid in the current state", SMTPC_CLASS_CONFIG},
    {SMTPC_EUNKNOWN, "SMTPC_EUNKNOWN", "outcome unknown: the message may have been delivered",
     SMTPC_CLASS_UNKNOWN},
    {SMTPC_ECONFIG, "SMTPC_ECONFIG", "configuration error", SMTPC_CLASS_CONFIG},
    {SMTPC_ELIMIT, "SMTPC_ELIMIT", "size limit exceeded", SMTPC_CLASS_PROTOCOL},
    {SMTPC_ENOTFOUND, "SMTPC_ENOTFOUND", "not found", SMTPC_CLASS_CONFIG},
    {SMTPC_EPROXY, "SMTPC_EPROXY", "proxy error", SMTPC_CLASS_TRANSIENT},
    {SMTPC_ELIBRARY, "SMTPC_ELIBRARY", "a system library could not be loaded", SMTPC_CLASS_CONFIG},
};

static const err_row *find(int code)
{
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (rows[i].code == code) return &rows[i];
    return NULL;
}

SMTPC_API const char *smtpc_strerror(int code)
{
    const err_row *r = find(code);
    return r ? r->text : "unknown error code";
}

SMTPC_API const char *smtpc_err_name(int code)
{
    const err_row *r = find(code);
    return r ? r->name : "SMTPC_E?";
}

SMTPC_API smtpc_error_class smtpc_error_classify(int code)
{
    const err_row *r = find(code);
    return r ? r->cls : SMTPC_CLASS_PROTOCOL;
}

SMTPC_API const char *smtpc_version(void)
{
    return SMTPC_VERSION_STRING;
}
