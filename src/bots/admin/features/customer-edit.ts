import { Composer, type Context } from "grammy";
import { findCustomerByAccountReference, findCustomerByPhone } from "../../../billing/accounts.ts";
import { type CustomerChange, editCustomer } from "../../../billing/customer-edit.ts";
import { displayPhone } from "../../../lib/phone.ts";
import { counted } from "../../../lib/plural.ts";
import { confirmable, type FeatureAction } from "../confirmations.ts";
import type { AdminKit } from "../kit.ts";
import { parseAccount, parseCustomerPhone, parseNote } from "../parse.ts";
import { adminActor } from "../roles.ts";

/**
 * `/customer_edit <account> <phone|name> <value…>`: a customer's new phone number or corrected
 * name (src/billing/customer-edit.ts), asked first. A new number unlinks the account's chats.
 */

type EditAction = FeatureAction & {
  feature: "customer_edit";
  customerId: number;
  accountNumber: string;
  change: CustomerChange;
};

const what = (action: EditAction) =>
  action.change.field === "phone"
    ? `move ${action.accountNumber} to phone ${displayPhone(action.change.phone)}`
    : `rename ${action.accountNumber} to ${action.change.name}`;

confirmable("customer_edit", {
  command: "customer_edit",
  describe: (a) => what(a as EditAction),
  async run(ctx, admin, a) {
    const action = a as EditAction;
    const done = await editCustomer(ctx, adminActor(admin.telegramId), action);
    if (action.change.field === "name") return `✅ ${action.accountNumber} is now ${done.after}.`;
    const chats =
      done.chatsUnlinked > 0
        ? ` ${counted(done.chatsUnlinked, "chat")} linked to the account ${done.chatsUnlinked === 1 ? "was" : "were"} unlinked: the customer links again from the new number.`
        : "";
    return `✅ ${action.accountNumber} is now on ${displayPhone(done.after)}: USSD, M-Pesa prompts and SMS use it from now on.${chats}`;
  },
});

export function customerEditFeature(kit: AdminKit): Composer<Context> {
  const { reply, usage, db } = kit;
  const composer = new Composer<Context>();
  kit.command(composer, "customer_edit", async (ctx, admin, args) => {
    const account = parseAccount(args[0]);
    if (!account.ok) return void (await reply(ctx, usage("customer_edit", account.error)));
    const field = args[1]?.toLowerCase();
    const value = parseNote(args.slice(2), 100);
    if ((field !== "phone" && field !== "name") || !value.ok || !value.value)
      return void (await reply(
        ctx,
        usage(
          "customer_edit",
          field !== "phone" && field !== "name"
            ? "Say what to change: phone or name."
            : value.ok
              ? `Say the new ${field}.`
              : `That ${field} is too long (at most 100 characters).`,
        ),
      ));
    let change: CustomerChange;
    if (field === "phone") {
      const phone = parseCustomerPhone(value.value, kit.deps.servedCountries);
      if (!phone.ok) return void (await reply(ctx, phone.error));
      change = { field, phone: phone.value };
    } else change = { field, name: value.value };
    const customer = await findCustomerByAccountReference(db, account.value);
    if (!customer) return void (await reply(ctx, `No account ${account.value}. Try /find.`));
    if (change.field === "phone") {
      const taken = await findCustomerByPhone(db, change.phone);
      if (taken && taken.id !== customer.id)
        return void (await reply(
          ctx,
          `${displayPhone(change.phone)} is already account ${taken.accountNumber} (/sub ${taken.accountNumber}).`,
        ));
    }
    const action: EditAction = {
      kind: "feature",
      feature: "customer_edit",
      customerId: customer.id,
      accountNumber: customer.accountNumber,
      change,
    };
    const sentence = what(action);
    const question =
      change.field === "phone"
        ? `${customer.name} (phone ${displayPhone(customer.phone)}): ${sentence}? The chats linked to the account will be unlinked.`
        : `${customer.name}: ${sentence}?`;
    await kit.ask(ctx, admin, action, question);
  });
  return composer;
}
