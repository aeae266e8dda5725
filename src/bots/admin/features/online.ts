import { eq } from "drizzle-orm";
import type { Subscription } from "../../../billing/accounts.ts";
import { plans } from "../../../db/schema/index.ts";
import { formatDateTime } from "../../../messaging/render.ts";
import type { ActiveSession } from "../../../network/active-sessions.ts";
import type { AdminKit } from "../kit.ts";

/**
 * "Online now" on `/sub`: the card never waits for a router. Once the card is answered, a
 * background check (`kit.background`) asks the subscriber's router for their session
 * (`/ppp/active`, or `/ip/hotspot/active` on a hotspot plan) and queues a short follow-up in the
 * same chat. Nothing is sent when the subscriber has no router or this instance runs no network
 * (`AdminNetwork.activeSession` absent).
 */

export type OnlineSubject = Pick<Subscription, "routerId" | "networkUsername" | "planId">;

export function followWithOnlineStatus(
  kit: AdminKit,
  chatId: number,
  subscription: OnlineSubject | null | undefined,
): void {
  const network = kit.deps.network;
  if (!subscription?.routerId || !network?.activeSession) return;
  const { routerId, networkUsername: username, planId } = subscription;
  kit.background(`online ${username}`, async () => {
    const [plan] = await kit.db.select({ kind: plans.kind }).from(plans).where(eq(plans.id, planId));
    const kind = plan?.kind === "hotspot" ? "hotspot" : "pppoe";
    let text: string;
    try {
      const session = await network.activeSession!(routerId, kind, username);
      text = onlineText(session, kit.clock.now(), kit.timezone);
    } catch (error) {
      kit.log.info(
        { routerId, err: error instanceof Error ? error.message : String(error) },
        "online check: router not reached",
      );
      text = "Online now: unknown (router unreachable)";
    }
    await kit.inTx((tx, _, now) => kit.say(tx, now, chatId, `${text} — ${username}`));
  });
}

export function onlineText(session: ActiveSession | null, now: Date, timezone: string): string {
  if (!session) return "Online now: no";
  const details = [
    ...(session.uptimeSeconds !== null
      ? [`since ${formatDateTime("en", new Date(now.getTime() - session.uptimeSeconds * 1000), timezone)}`]
      : []),
    ...(session.address ? [`address ${session.address}`] : []),
  ];
  return `Online now: yes${details.length ? ` (${details.join(", ")})` : ""}`;
}
