import { Composer, type Context } from "grammy";
import { counted } from "../../../lib/plural.ts";
import { findRouterByReference } from "../../../network/health.ts";
import type { AdminKit } from "../kit.ts";
import { retryDeadProvisioningInTx } from "../ops-queries.ts";
import { adminActor } from "../roles.ts";

/** `/retry <router>`: the router's given-up jobs back to the queue, in one audited transaction. */
export function retryFeature(kit: AdminKit): Composer<Context> {
  const composer = new Composer<Context>();
  kit.command(composer, "retry", async (ctx, admin, args) => {
    if (args.length !== 1)
      return void (await kit.reply(
        ctx,
        kit.usage("retry", args.length ? "Too many words." : "Say which router."),
      ));
    const router = await findRouterByReference(kit.db, args[0]!);
    if (!router) return void (await kit.reply(ctx, `No router "${args[0]}". /routers lists them.`));
    const count = await kit.inTx(async (tx, _, now) => {
      const n = await retryDeadProvisioningInTx(tx, now, adminActor(admin.telegramId), router);
      await kit.say(
        tx,
        now,
        ctx.chat!.id,
        n === 0
          ? `${router.name} has no given-up jobs.`
          : `🔁 ${counted(n, "given-up job")} of ${router.name} queued again. /routers shows the queue.`,
      );
      return n;
    });
    if (count > 0) kit.deps.network?.kick?.();
  });
  return composer;
}
