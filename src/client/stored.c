/* The writer flags of a stored copy of a composed message (a pickup file,
 * an outbox entry). */
#include "client/deliver.h"

#include <smtpc/message.h>

unsigned smtpc__stored_write_flags(const smtpc_message *m)
{
    /* Whoever sends a stored copy later meets a server whose extensions
     * are unknown now, and sends it as it is: the outbox's flush declares
     * neither BODY=8BITMIME nor SMTPUTF8 for it, a pickup file goes to
     * whatever MTA relays it. So 7-bit clean (RFC 2047 encoded words, a
     * transfer encoding for 8-bit parts) - unless an address needs
     * SMTPUTF8: that message can only go to a server that offers it
     * (RFC 6531 implies 8BITMIME), where raw UTF-8 headers are right. */
    return smtpc_message_needs_smtputf8(m) ? SMTPC_WRITE_8BITMIME | SMTPC_WRITE_SMTPUTF8 : 0u;
}
