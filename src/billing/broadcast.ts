import { and, asc, eq, inArray, type SQL, sql } from "drizzle-orm";
import type { Executor } from "../db/client.ts";
import { customers, plans, routers, subscriptions } from "../db/schema/index.ts";
import { counted } from "../lib/plural.ts";
import { plainPunctuation } from "../lib/sms-text.ts";
import { audit } from "./audit.ts";
import { type Actor, type BillingContext, BillingError } from "./context.ts";
import { enqueueMessages, type OutboundMessage } from "./outbox.ts";

/**
 * A notice from the ISP to a group of subscribers (an outage on one router, a plan's change, an
 * area's maintenance, everyone). One `broadcast` notice per customer, written in one transaction
 * with the audit entry; the outbox trigger (migration 0013) routes each to the customer's chat or
 * SMS and the workers pace delivery. The dedupe key (broadcast id + customer) makes a repeat of the
 * same broadcast send nothing twice.
 *
 * Who counts: customers (not inactive) with a subscription that is not cancelled. An area is the one
 * the customer named when signing themselves up (audit `customer.self_signup`): customers added by
 * an admin have none, so `router` is the way to reach everyone on a site.
 */

export type Audience =
  | { kind: "router"; name: string }
  | { kind: "plan"; code: string }
  | { kind: "area"; name: string }
  | { kind: "all" };

export const BROADCAST_MAX_CHARS = 480;

/** `2 subscribers on router Kibera-1`, `1 subscriber in area Roysambu`, `all 40 subscribers`. */
export function audienceLabel(audience: Audience, count: number): string {
  const who = counted(count, "subscriber");
  switch (audience.kind) {
    case "router":
      return `${who} on router ${audience.name}`;
    case "plan":
      return `${who} on plan ${audience.code}`;
    case "area":
      return `${who} in area ${audience.name}`;
    case "all":
      return `all ${who}`;
  }
}

async function audienceFilter(db: Executor, audience: Audience): Promise<SQL | undefined> {
  switch (audience.kind) {
    case "router": {
      const found = await db
        .select({ id: routers.id })
        .from(routers)
        .where(sql`lower(${routers.name}) = lower(${audience.name})`);
      if (found.length === 0) throw new BillingError("unknown_router", `No router named ${audience.name}.`);
      return inArray(
        subscriptions.routerId,
        found.map((r) => r.id),
      );
    }
    case "plan": {
      const [plan] = await db
        .select({ id: plans.id })
        .from(plans)
        .where(eq(plans.code, audience.code.toLowerCase()));
      if (!plan) throw new BillingError("unknown_plan", `No plan with code ${audience.code}.`);
      return eq(subscriptions.planId, plan.id);
    }
    case "area":
      return sql`exists (select 1 from audit_log a where a.action = 'customer.self_signup' and a.entity = 'customer' and a.entity_id = ${customers.id}::text and lower(a.details->>'area') = lower(${audience.name}))`;
    case "all":
      return undefined;
  }
}

/** The customers a broadcast reaches: id, phone and language, once each. */
export async function broadcastRecipients(db: Executor, audience: Audience) {
  const filter = await audienceFilter(db, audience);
  return db
    .selectDistinct({ id: customers.id, phone: customers.phone, language: customers.language })
    .from(customers)
    .innerJoin(subscriptions, eq(subscriptions.customerId, customers.id))
    .where(and(eq(customers.status, "active"), sql`${subscriptions.status} <> 'cancelled'`, filter))
    .orderBy(asc(customers.id));
}

/**
 * The notice as it will be sent: trimmed, its typographic punctuation plain (one curly quote would
 * send every copy as a Unicode SMS, twice the parts).
 */
export function checkBroadcastText(text: string): string {
  const trimmed = plainPunctuation(text).trim();
  if (!trimmed) throw new BillingError("empty_broadcast", "Say what the notice says.");
  if (trimmed.length > BROADCAST_MAX_CHARS)
    throw new BillingError(
      "broadcast_too_long",
      `The notice is ${trimmed.length} characters; at most ${BROADCAST_MAX_CHARS}.`,
    );
  return trimmed;
}

const CHUNK = 1000;

/** Writes the notices of broadcast `broadcastId` (one per customer), audited; answers how many. */
export function sendBroadcast(
  ctx: BillingContext,
  actor: Actor,
  input: { broadcastId: string; audience: Audience; text: string },
) {
  const text = checkBroadcastText(input.text);
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const recipients = await broadcastRecipients(tx, input.audience);
    for (let i = 0; i < recipients.length; i += CHUNK) {
      const messages: OutboundMessage[] = recipients.slice(i, i + CHUNK).map((c) => ({
        recipient: c.phone,
        language: c.language,
        template: "broadcast",
        params: { text },
        dedupeKey: `broadcast:${input.broadcastId}:${c.id}`,
      }));
      await enqueueMessages(tx, now, messages);
    }
    await audit(tx, actor, now, {
      action: "broadcast.sent",
      entity: "broadcast",
      entityId: input.broadcastId,
      details: { audience: input.audience, text, recipients: recipients.length },
    });
    return { recipients: recipients.length };
  });
}
