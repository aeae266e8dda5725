import type { Executor } from "../db/client.ts";
import { auditLog } from "../db/schema/index.ts";
import { type Actor, BillingError } from "./context.ts";

export interface AuditEntry {
  action: string;
  entity: string;
  entityId: string | number;
  reason?: string;
  details?: Record<string, unknown>;
}

export async function audit(tx: Executor, actor: Actor, at: Date, entry: AuditEntry): Promise<void> {
  await auditMany(tx, actor, at, [entry]);
}

export async function auditMany(tx: Executor, actor: Actor, at: Date, entries: AuditEntry[]): Promise<void> {
  if (entries.length === 0) return;
  await tx.insert(auditLog).values(
    entries.map((entry) => ({
      actorKind: actor.kind,
      actorId: actor.id,
      channel: actor.channel ?? null,
      action: entry.action,
      entity: entry.entity,
      entityId: String(entry.entityId),
      reason: entry.reason ?? null,
      details: entry.details ?? {},
      at,
    })),
  );
}

/** The reason an admin gives for an audited change, trimmed; refused when blank. */
export function requireReason(reason: string | undefined): string {
  const trimmed = reason?.trim();
  if (!trimmed) throw new BillingError("reason_required", "Say why: the reason goes into the audit log.");
  return trimmed;
}
