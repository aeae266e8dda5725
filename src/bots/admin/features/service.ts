import { Composer, type Context } from "grammy";
import { findCustomerByAccountReference } from "../../../billing/accounts.ts";
import { describe, type PendingAction } from "../confirmations.ts";
import type { AdminKit } from "../kit.ts";
import { parseAccount, parseAmount, parseNote } from "../parse.ts";
import { currentSubscription } from "../queries.ts";
import type { Admin } from "../roles.ts";

/** `/pay`, `/suspend`, `/resume`: each asked first (confirmations.ts). */
export function serviceFeature(kit: AdminKit): Composer<Context> {
  const { reply, usage, db } = kit;
  const service = new Composer<Context>();
  kit.command(service, "pay", async (ctx, admin, args) => {
    const account = parseAccount(args[0]);
    if (!account.ok) return void (await reply(ctx, usage("pay", account.error)));
    const amount = parseAmount(args[1]);
    if (!amount.ok) return void (await reply(ctx, usage("pay", amount.error)));
    const note = parseNote(args.slice(2));
    if (!note.ok) return void (await reply(ctx, usage("pay", note.error)));
    const customer = await findCustomerByAccountReference(db, account.value);
    if (!customer) return void (await reply(ctx, `No account ${account.value}. Try /find.`));
    const action: PendingAction = {
      kind: "pay",
      customerId: customer.id,
      accountNumber: customer.accountNumber,
      amountCents: amount.value,
      note: note.value,
    };
    await kit.ask(ctx, admin, action, `${customer.name}: ${describe(action)}?`);
  });
  kit.command(service, "suspend", (ctx, admin, args) => askService(kit, ctx, admin, "suspend", args));
  kit.command(service, "resume", (ctx, admin, args) => askService(kit, ctx, admin, "resume", args));
  return service;
}

/** `/suspend` and `/resume`, typed or pressed on a card (features/buttons.ts). */
export async function askService(
  kit: AdminKit,
  ctx: Context,
  admin: Admin,
  kind: "suspend" | "resume",
  args: string[],
): Promise<void> {
  const { reply, usage, db } = kit;
  const account = parseAccount(args[0]);
  if (!account.ok) return void (await reply(ctx, usage(kind, account.error)));
  const reason = parseNote(args.slice(1));
  if (!reason.ok) return void (await reply(ctx, usage(kind, reason.error)));
  const customer = await findCustomerByAccountReference(db, account.value);
  if (!customer) return void (await reply(ctx, `No account ${account.value}. Try /find.`));
  const subscription = await currentSubscription(db, customer.id);
  if (!subscription)
    return void (await reply(ctx, `${customer.accountNumber} has no subscription to ${kind}.`));
  if (kind === "suspend" && subscription.status === "suspended" && subscription.suspendedReason === "admin")
    return void (await reply(ctx, `${customer.accountNumber} is already suspended by an admin.`));
  if (kind === "resume" && subscription.status !== "suspended")
    return void (await reply(
      ctx,
      `${customer.accountNumber} is not suspended (it is ${subscription.status}).`,
    ));
  const action: PendingAction = {
    kind,
    subscriptionId: subscription.id,
    customerId: customer.id,
    accountNumber: customer.accountNumber,
    reason: reason.value || `${kind === "suspend" ? "suspended" : "resumed"} from the admin chat`,
  };
  await kit.ask(ctx, admin, action, `${customer.name}: ${describe(action)}?`);
}
