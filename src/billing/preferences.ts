import { sql } from "drizzle-orm";
import { queryRows } from "../db/client.ts";
import type { Language } from "../db/schema/index.ts";
import type { Actor, BillingContext } from "./context.ts";
import { onceUnderKey } from "./idempotency.ts";

/**
 * The language a customer reads menus and SMS in. Returns false when there is no such customer.
 * One statement (it runs on a USSD confirmation): the update, and an audit entry when it changed.
 */
export async function setCustomerLanguage(
  ctx: BillingContext,
  actor: Actor,
  input: {
    customerId: number;
    language: Language;
    /** A repeat under the same key changes nothing, so a late copy cannot undo a newer choice. */
    idempotencyKey?: string;
  },
): Promise<boolean> {
  const at = ctx.clock.now().toISOString();
  const once = onceUnderKey(input.idempotencyKey ?? null, at);
  const [row] = await queryRows<{ found: boolean }>(
    ctx.db,
    sql`
    with claim as (${once.claim}),
    before as (
      select id, language from customers where id = ${input.customerId}::int and ${once.first(sql`claim`)} for no key update
    ),
    changed as (
      update customers c set language = ${input.language}
      from before b where c.id = b.id and b.language <> ${input.language}
      returning c.id, b.language as previous
    ),
    audited as (
      insert into audit_log (actor_kind, actor_id, channel, action, entity, entity_id, details, at)
      select ${actor.kind}, ${actor.id}, ${actor.channel ?? null}::text, 'customer.language_changed', 'customer',
        id::text, jsonb_build_object('from', previous, 'to', ${input.language}::text), ${at}::timestamptz
      from changed
    )
    select exists (select 1 from customers where id = ${input.customerId}::int) as found`,
  );
  return row?.found === true;
}
