import { and, asc, eq, ne, sql } from "drizzle-orm";
import { audit } from "../../billing/audit.ts";
import { type Actor, type BillingContext, BillingError, systemActor } from "../../billing/context.ts";
import type { Executor } from "../../db/client.ts";
import { type AdminRole, adminRoles, admins } from "../../db/schema/index.ts";

/**
 * Who may do what in the admin chat, stated once. A command not listed for a role is refused (and
 * the refusal audited); `/help` shows each caller only their own commands.
 */
export type AdminCommand =
  | "help"
  | "plans"
  | "plan_add"
  | "plan_edit"
  | "extend"
  | "plan"
  | "cancel"
  | "place"
  | "signups"
  | "add"
  | "customer_edit"
  | "resubscribe"
  | "broadcast"
  | "stats"
  | "export"
  | "import"
  | "report"
  | "vouchers"
  | "sold"
  | "find"
  | "sub"
  | "unmatched"
  | "pay"
  | "adjust"
  | "resume"
  | "suspend"
  | "assign"
  | "refunded"
  | "prompt_paid"
  | "sell_voucher"
  | "admins"
  | "admin_add"
  | "admin_remove"
  | "routers"
  | "sync"
  | "retry"
  | "router_add"
  | "router_edit"
  | "router_password"
  | "router_cert"
  | "failed"
  | "resend"
  | "audit";

const everyone: readonly AdminRole[] = adminRoles;
const staff: readonly AdminRole[] = ["owner", "admin", "support"];
const managers: readonly AdminRole[] = ["owner", "admin"];

export const PERMISSIONS: Readonly<Record<AdminCommand, readonly AdminRole[]>> = {
  help: everyone,
  plans: everyone,
  plan_add: managers,
  plan_edit: managers,
  extend: managers,
  plan: managers,
  cancel: managers,
  place: managers,
  signups: everyone,
  add: managers,
  // A phone number is who the customer is to M-Pesa and the menus: managers only.
  customer_edit: managers,
  resubscribe: managers,
  broadcast: managers,
  stats: everyone,
  export: managers,
  import: managers,
  report: everyone,
  vouchers: managers,
  // Recording what a reseller sold is like recording cash: support staff do it.
  sold: staff,
  find: everyone,
  sub: everyone,
  unmatched: everyone,
  pay: staff,
  // Takes money off a balance as well as crediting it: managers only.
  adjust: managers,
  resume: staff,
  suspend: managers,
  assign: managers,
  refunded: managers,
  // Credits money on an admin's reading of M-Pesa's statement, as /assign does: managers only.
  prompt_paid: managers,
  // Places queued money, as /assign does: managers only.
  sell_voucher: managers,
  admins: managers,
  admin_add: ["owner"],
  admin_remove: ["owner"],
  routers: everyone,
  failed: everyone,
  // Can send a voucher code or a router login to any number: managers only.
  resend: managers,
  audit: everyone,
  sync: managers,
  retry: managers,
  router_add: managers,
  router_edit: managers,
  router_password: managers,
  router_cert: managers,
};

export const may = (role: AdminRole, command: AdminCommand): boolean => PERMISSIONS[command].includes(role);

export interface Admin {
  telegramId: number;
  role: AdminRole;
  name: string;
}

export const isRole = (value: string): value is AdminRole =>
  (adminRoles as readonly string[]).includes(value);

/** How an admin appears in the audit log: `tg:<telegram user id>` on the admin chat's channel. */
export const adminActor = (telegramId: number): Actor => ({
  kind: "admin",
  id: `tg:${telegramId}`,
  channel: "telegram_admin",
});

/**
 * Someone who is not an admin (or an admin outside an admin chat): there is no actor kind for an
 * unknown Telegram user, so the attempt is recorded as arriving by the webhook, with their id.
 */
export const strangerActor = (telegramId: number): Actor => ({
  kind: "webhook",
  id: `tg:${telegramId}`,
  channel: "telegram_admin",
});

export async function findAdmin(db: Executor, telegramId: number): Promise<Admin | null> {
  const [row] = await db
    .select({ telegramId: admins.telegramId, role: admins.role, name: admins.name })
    .from(admins)
    .where(eq(admins.telegramId, telegramId));
  return row ?? null;
}

export async function listAdmins(db: Executor) {
  return db.select().from(admins).orderBy(asc(admins.createdAt), asc(admins.id));
}

/**
 * The owner named in configuration (`TELEGRAM_OWNER_ID`) exists and is an owner: run at every
 * start, it changes nothing the second time. An owner removed or demoted by chat comes back here,
 * which is why the chat refuses to remove them.
 */
export async function ensureOwner(
  ctx: BillingContext,
  telegramId: number,
): Promise<"added" | "promoted" | "kept"> {
  if (!Number.isSafeInteger(telegramId) || telegramId <= 0)
    throw new Error("the owner's Telegram id must be a positive integer");
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const [before] = await tx.select().from(admins).where(eq(admins.telegramId, telegramId)).for("update");
    if (before?.role === "owner") return "kept";
    if (before) await tx.update(admins).set({ role: "owner" }).where(eq(admins.id, before.id));
    else
      await tx
        .insert(admins)
        .values({ telegramId, role: "owner", name: "owner (configuration)", addedBy: null })
        .onConflictDoNothing();
    await audit(tx, systemActor("config"), now, {
      action: before ? "admin.promoted" : "admin.added",
      entity: "admin",
      entityId: telegramId,
      reason: "TELEGRAM_OWNER_ID",
      details: { role: "owner", ...(before ? { from: before.role } : {}) },
    });
    return before ? "promoted" : "added";
  });
}

/** An owner adds an admin, or changes the role of one already there. Audited; runs in `tx`. */
export async function addAdminInTx(
  tx: Executor,
  now: Date,
  by: Admin,
  input: { telegramId: number; role: AdminRole; name: string },
  configuredOwner?: number,
): Promise<"added" | "changed" | "unchanged"> {
  if (by.role !== "owner") throw new BillingError("not_owner", "Only an owner adds admins.");
  if (input.telegramId === configuredOwner && input.role !== "owner")
    throw new BillingError(
      "configured_owner",
      "That owner comes from the configuration (TELEGRAM_OWNER_ID): change it there.",
    );
  const [before] = await tx
    .select()
    .from(admins)
    .where(eq(admins.telegramId, input.telegramId))
    .for("update");
  if (before && before.role === input.role && (input.name === "" || before.name === input.name))
    return "unchanged";
  if (before?.role === "owner" && input.role !== "owner") await keepAnOwner(tx, input.telegramId);
  if (before)
    await tx
      .update(admins)
      .set({ role: input.role, ...(input.name ? { name: input.name } : {}) })
      .where(eq(admins.id, before.id));
  else
    await tx
      .insert(admins)
      .values({ telegramId: input.telegramId, role: input.role, name: input.name, addedBy: by.telegramId });
  await audit(tx, adminActor(by.telegramId), now, {
    action: before ? "admin.changed" : "admin.added",
    entity: "admin",
    entityId: input.telegramId,
    details: { role: input.role, name: input.name, ...(before ? { from: before.role } : {}) },
  });
  return before ? "changed" : "added";
}

/** An owner removes an admin (never themselves, the configured owner, or the last owner). */
export async function removeAdminInTx(
  tx: Executor,
  now: Date,
  by: Admin,
  telegramId: number,
  configuredOwner: number | undefined,
): Promise<Admin> {
  if (by.role !== "owner") throw new BillingError("not_owner", "Only an owner removes admins.");
  if (telegramId === by.telegramId)
    throw new BillingError("self", "You cannot remove yourself; ask another owner.");
  if (telegramId === configuredOwner)
    throw new BillingError(
      "configured_owner",
      "That owner comes from the configuration (TELEGRAM_OWNER_ID): change it there.",
    );
  const [before] = await tx.select().from(admins).where(eq(admins.telegramId, telegramId)).for("update");
  if (!before) throw new BillingError("unknown_admin", `${telegramId} is not an admin.`);
  if (before.role === "owner") await keepAnOwner(tx, telegramId);
  await tx.delete(admins).where(eq(admins.id, before.id));
  await audit(tx, adminActor(by.telegramId), now, {
    action: "admin.removed",
    entity: "admin",
    entityId: telegramId,
    details: { role: before.role, name: before.name },
  });
  return { telegramId: before.telegramId, role: before.role, name: before.name };
}

/** Refuses a change that would leave no owner besides `leaving`. */
async function keepAnOwner(tx: Executor, leaving: number): Promise<void> {
  const [row] = await tx
    .select({ n: sql<number>`count(*)::int` })
    .from(admins)
    .where(and(eq(admins.role, "owner"), ne(admins.telegramId, leaving)));
  if (Number(row?.n ?? 0) === 0)
    throw new BillingError("last_owner", "That is the last owner: add another owner first.");
}
