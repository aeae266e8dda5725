import { Composer, type Context } from "grammy";
import { findCustomerByAccountReference } from "../../../billing/accounts.ts";
import { counted } from "../../../lib/plural.ts";
import { formatDateTime } from "../../../messaging/render.ts";
import type { AdminKit } from "../kit.ts";
import { type AuditEntryRow, auditOfCustomer, auditOfTelegramUser } from "../ops-queries.ts";

export const AUDIT_DEFAULT = 10;
export const AUDIT_MAX = 50;

/** `/audit <account | telegram id> [n]`: the last n audit entries of a customer or an admin. */
export function auditFeature(kit: AdminKit): Composer<Context> {
  const composer = new Composer<Context>();
  kit.command(composer, "audit", async (ctx, _admin, args) => {
    const [who, count, ...rest] = args;
    if (!who)
      return void (await kit.reply(ctx, kit.usage("audit", "Say an account number or a Telegram id.")));
    if (rest.length) return void (await kit.reply(ctx, kit.usage("audit", "Too many words.")));
    let n = AUDIT_DEFAULT;
    if (count !== undefined) {
      if (!/^\d{1,3}$/.test(count) || Number(count) < 1 || Number(count) > AUDIT_MAX)
        return void (await kit.reply(
          ctx,
          kit.usage("audit", `"${count}" is not a number of entries from 1 to ${AUDIT_MAX}.`),
        ));
      n = Number(count);
    }
    if (!/^#?[A-Za-z0-9-]{2,32}$/.test(who))
      return void (await kit.reply(
        ctx,
        kit.usage("audit", `"${who}" is neither an account nor a Telegram id.`),
      ));
    const customer = await findCustomerByAccountReference(kit.db, who);
    let title: string;
    let rows: AuditEntryRow[];
    if (customer) {
      title = `${customer.accountNumber} · ${customer.name}`;
      rows = await auditOfCustomer(kit.db, customer, n);
    } else if (/^\d{1,15}$/.test(who)) {
      title = `Telegram user ${who}`;
      rows = await auditOfTelegramUser(kit.db, Number(who), n);
    } else return void (await kit.reply(ctx, `No account ${who}. Try /find.`));
    if (rows.length === 0) return void (await kit.reply(ctx, `${title}: no audit entries.`));
    await kit.replyLines(ctx, [
      `${title}: last ${counted(rows.length, "audit entry", "audit entries")}, newest first:`,
      ...rows.map((r) => auditLine(r, kit.timezone)),
    ]);
  });
  return composer;
}

function auditLine(r: AuditEntryRow, timezone: string): string {
  const details = Object.entries(r.details ?? {})
    .filter(([, v]) => v !== null && typeof v !== "object")
    .slice(0, 4)
    .map(([k, v]) => `${k}=${String(v).slice(0, 40)}`)
    .join(" ");
  return `  • ${formatDateTime("en", r.at, timezone)} ${r.action} ${r.entity} ${r.entityId} by ${r.actorKind} ${r.actorId}${r.reason ? ` (${r.reason.slice(0, 80)})` : ""}${details ? ` — ${details}` : ""}`;
}
