/* smtpc — umbrella header: include this one. */
#ifndef SMTPC_SMTPC_H
#define SMTPC_SMTPC_H

#include "common.h"
#include "errors.h"
#include "reply.h"
#include "conn.h"
#include "session.h"
#include "pickup.h"
#include "message.h"
#include "tls.h"
#include "proxy.h"
#include "config.h"
#include "client.h"
#include "outbox.h"
#include "async.h"
#include "dkim.h"

#endif
