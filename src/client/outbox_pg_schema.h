/* The PostgreSQL outbox's schema, the one place it is written (documented
 * in smtpc-queue(7)). Each step upgrades the schema from the version before
 * it; smtpc_outbox_init applies the missing ones under an advisory lock and
 * records the version in {S}.settings. {S} stands for the schema's name
 * (checked to be a plain lower-case identifier) and is also the NOTIFY
 * channel. Included by outbox_pg.c only. */
#ifndef SMTPC_CLIENT_OUTBOX_PG_SCHEMA_H
#define SMTPC_CLIENT_OUTBOX_PG_SCHEMA_H

static const char *const smtpc__pg_steps[] = {
    /* version 1 */
    "CREATE TABLE {S}.messages (\n"
    "  id bigserial PRIMARY KEY,\n"
    "  state text NOT NULL DEFAULT 'queued'\n"
    "    CHECK (state IN ('queued', 'sending', 'sent', 'failed')),\n"
    "  sender text NOT NULL,\n"
    "  recipients text[] NOT NULL,\n"
    "  body bytea,\n"
    "  priority int NOT NULL DEFAULT 0,\n"
    "  not_before timestamptz NOT NULL DEFAULT now(),\n"
    "  created_at timestamptz NOT NULL DEFAULT now(),\n"
    "  attempts int NOT NULL DEFAULT 0,\n"
    "  worker text,\n"
    "  lease_until timestamptz,\n"
    "  last_code int,\n"
    "  last_error text NOT NULL DEFAULT '',\n"
    "  rcpt_codes int[],\n"
    "  done_at timestamptz,\n"
    "  parent bigint\n"
    ");\n"
    "CREATE INDEX messages_due ON {S}.messages (priority DESC, not_before, id) WHERE state = 'queued';\n"
    "CREATE INDEX messages_lease ON {S}.messages (lease_until) WHERE state = 'sending';\n"
    "CREATE INDEX messages_done ON {S}.messages (done_at) WHERE state = 'sent';\n"
    "CREATE TABLE {S}.workers (\n"
    "  name text PRIMARY KEY,\n"
    "  started_at timestamptz NOT NULL DEFAULT now(),\n"
    "  heartbeat timestamptz NOT NULL DEFAULT now(),\n"
    "  lease_s float8 NOT NULL DEFAULT 60,\n"
    "  sent bigint NOT NULL DEFAULT 0,\n"
    "  failed bigint NOT NULL DEFAULT 0\n"
    ");\n"
    "INSERT INTO {S}.settings (key, value) VALUES\n"
    "  ('body_retention', '7 days'), ('row_retention', '90 days')\n"
    "  ON CONFLICT (key) DO NOTHING;\n"
    "CREATE FUNCTION {S}.enqueue(sender text, recipients text[], message bytea,\n"
    "    not_before timestamptz DEFAULT now(), priority int DEFAULT 0) RETURNS bigint\n"
    "LANGUAGE plpgsql AS $$\n"
    "DECLARE\n"
    "  new_id bigint;\n"
    "BEGIN\n"
    "  IF sender IS NULL OR sender ~ '[\\r\\n]' OR message IS NULL\n"
    "     OR coalesce(cardinality(recipients), 0) = 0\n"
    "     OR EXISTS (SELECT 1 FROM unnest(recipients) r WHERE r IS NULL OR r = '' OR r ~ '[\\r\\n]') THEN\n"
    "    RAISE EXCEPTION 'smtpc.enqueue: no sender, recipient or message, or CR/LF in an address'\n"
    "      USING ERRCODE = '22023';\n"
    "  END IF;\n"
    "  INSERT INTO {S}.messages (sender, recipients, body, not_before, priority)\n"
    "    VALUES (sender, recipients, message, coalesce(not_before, now()), coalesce(priority, 0))\n"
    "    RETURNING id INTO new_id;\n"
    "  PERFORM pg_notify('{S}', '');\n"
    "  RETURN new_id;\n"
    "END $$;\n",
};

#endif
