import type { Executor } from "../db/client.ts";
import { auditLog } from "../db/schema/index.ts";
import type { Actor } from "./context.ts";

export async function audit(
  tx: Executor,
  actor: Actor,
  at: Date,
  entry: {
    action: string;
    entity: string;
    entityId: string | number;
    reason?: string;
    details?: Record<string, unknown>;
  },
): Promise<void> {
  await tx.insert(auditLog).values({
    actorKind: actor.kind,
    actorId: actor.id,
    channel: actor.channel ?? null,
    action: entry.action,
    entity: entry.entity,
    entityId: String(entry.entityId),
    reason: entry.reason ?? null,
    details: entry.details ?? {},
    at,
  });
}
