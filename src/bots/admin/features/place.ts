import { eq } from "drizzle-orm";
import { Composer, type Context } from "grammy";
import { findCustomerByAccountReference } from "../../../billing/accounts.ts";
import { placeSubscription } from "../../../billing/placement.ts";
import { routers } from "../../../db/schema/index.ts";
import { findRouterByReference } from "../../../network/health.ts";
import { confirmable, type FeatureAction } from "../confirmations.ts";
import type { AdminKit } from "../kit.ts";
import { parseAccount } from "../parse.ts";
import { currentSubscription } from "../queries.ts";
import { adminActor } from "../roles.ts";
import { capitalised } from "../texts.ts";

/**
 * `/place <account> <router>`: puts a subscriber on a router, or moves them to another (asked
 * first): one added with no router yet, a self sign-up that paid before it was placed, a customer
 * who moved. The router account follows (src/billing/placement.ts).
 */

type PlaceAction = FeatureAction & {
  feature: "place";
  subscriptionId: number;
  accountNumber: string;
  routerId: number;
  routerName: string;
  fromName: string | null;
};

const what = (action: PlaceAction) =>
  action.fromName
    ? `move ${action.accountNumber} from router ${action.fromName} to ${action.routerName}`
    : `put ${action.accountNumber} on router ${action.routerName}`;

confirmable("place", {
  command: "place",
  describe: (a) => what(a as PlaceAction),
  async run(ctx, admin, a) {
    const action = a as PlaceAction;
    await placeSubscription(ctx, adminActor(admin.telegramId), {
      subscriptionId: action.subscriptionId,
      routerId: action.routerId,
    });
    return `✅ ${action.accountNumber} is on ${action.routerName} now: its router account is being set up${action.fromName ? ` there and removed from ${action.fromName}` : ""}.`;
  },
});

export function placeFeature(kit: AdminKit): Composer<Context> {
  const { reply, usage, db } = kit;
  const composer = new Composer<Context>();
  kit.command(composer, "place", async (ctx, admin, args) => {
    const account = parseAccount(args[0]);
    if (!account.ok) return void (await reply(ctx, usage("place", account.error)));
    const reference = args.slice(1).join(" ");
    if (!reference) return void (await reply(ctx, usage("place", "Say which router (/routers lists them).")));
    const customer = await findCustomerByAccountReference(db, account.value);
    if (!customer) return void (await reply(ctx, `No account ${account.value}. Try /find.`));
    const subscription = await currentSubscription(db, customer.id);
    if (!subscription) return void (await reply(ctx, `${customer.accountNumber} has no subscription.`));
    const router = await findRouterByReference(db, reference);
    if (!router) return void (await reply(ctx, `No router "${reference}". /routers lists them.`));
    const [current] =
      subscription.routerId === null
        ? []
        : await db.select({ name: routers.name }).from(routers).where(eq(routers.id, subscription.routerId));
    const from = subscription.routerId === null ? null : (current?.name ?? String(subscription.routerId));
    if (subscription.routerId === router.id)
      return void (await reply(ctx, `${customer.accountNumber} is already on ${router.name}.`));
    const action: PlaceAction = {
      kind: "feature",
      feature: "place",
      subscriptionId: subscription.id,
      accountNumber: customer.accountNumber,
      routerId: router.id,
      routerName: router.name,
      fromName: from,
    };
    const sentence = what(action);
    await kit.ask(ctx, admin, action, `${customer.name} (${subscription.status}): ${capitalised(sentence)}?`);
  });
  return composer;
}
