import { Composer, type Context } from "grammy";
import { audit } from "../../../billing/audit.ts";
import { confirmRouterCertificate } from "../../../network/routers.ts";
import type { AdminKit } from "../kit.ts";
import { adminActor } from "../roles.ts";
import { routerNamed } from "./router-dialog-input.ts";

/**
 * `/router_cert <router> [fingerprint]`: a router serving API-SSL is refused until an admin confirms
 * the certificate it presented (src/network/routers.ts). Without a fingerprint the command shows the
 * one presented; with one, typed as the admin read it on the router itself (`/certificate print
 * detail`), it is pinned when it is that same certificate. Typing it is the confirmation: a
 * certificate nobody checked on the router is never pinned by a button press.
 */
export function routerCertFeature(kit: AdminKit): Composer<Context> {
  const composer = new Composer<Context>();
  kit.command(composer, "router_cert", async (ctx, admin, args) => {
    if (args.length === 0)
      return void (await kit.reply(ctx, kit.usage("router_cert", "Say the router, then its fingerprint.")));
    // The longest run of first words that names a router (a name may hold spaces); the rest is the
    // fingerprint, however it was pasted (spaces, colons).
    let router: Awaited<ReturnType<typeof routerNamed>> = null;
    let named = 0;
    for (let k = args.length; k >= 1 && !router; k--) {
      router = await routerNamed(kit.db, args.slice(0, k).join(" "));
      if (router) named = k;
    }
    if (!router) return void (await kit.reply(ctx, `No router "${args[0]}". /routers lists them.`));
    const fingerprint = args.slice(named).join("");
    if (!fingerprint) {
      const pinned = router.tlsFingerprint ? `Pinned now: SHA-256 ${router.tlsFingerprint}.\n` : "";
      if (!router.tlsFingerprintSeen || router.tlsFingerprintSeen === router.tlsFingerprint)
        return void (await kit.reply(
          ctx,
          `${pinned}${router.name} has presented no new certificate to confirm${router.tls ? "" : " (it does not use TLS)"}.`,
        ));
      return void (await kit.reply(
        ctx,
        [
          `${pinned}${router.name} presented a certificate with SHA-256 fingerprint:`,
          router.tlsFingerprintSeen,
          `Compare it with the router's own (/certificate print detail, its fingerprint), then type /router_cert ${router.name} <that fingerprint>.`,
        ].join("\n"),
      ));
    }
    const confirmed = await kit.inTx(async (tx, _, now) => {
      const result = await confirmRouterCertificate(tx, router.id, fingerprint);
      if (result.ok) {
        await audit(tx, adminActor(admin.telegramId), now, {
          action: "router.certificate_confirmed",
          entity: "router",
          entityId: router.id,
          details: { router: router.name, fingerprint: result.fingerprint },
        });
        await kit.say(
          tx,
          now,
          ctx.chat!.id,
          `✅ ${router.name}'s certificate is pinned (SHA-256 ${result.fingerprint}): its next connection is accepted.`,
        );
      } else await kit.say(tx, now, ctx.chat!.id, `Not pinned: ${result.reason}.`);
      return result.ok;
    });
    if (!confirmed) return;
    // After the commit: the worker's next try connects at once instead of waiting out a back-off.
    await kit.deps.network?.routerChanged?.(router.id);
    kit.deps.network?.kick?.();
  });
  return composer;
}
