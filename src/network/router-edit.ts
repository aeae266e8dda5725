import { eq } from "drizzle-orm";
import { audit } from "../billing/audit.ts";
import type { Actor } from "../billing/context.ts";
import type { Executor } from "../db/client.ts";
import { routers } from "../db/schema/index.ts";
import type { SecretBox } from "../lib/secret-box.ts";

/**
 * An admin changes a router Tandao already knows: how it is reached and logged in to, or its
 * password. Each writes the row and its audit entry in the caller's transaction; the connection
 * still open with the old settings is the caller's to drop once that transaction has committed.
 */

/** What an edit may change (the password has a use-case of its own: it is never typed with these). */
export interface RouterSettings {
  host: string;
  port: number;
  tls: boolean;
  username: string;
}

export interface EditedRouter extends RouterSettings {
  id: number;
  name: string;
}

/** The part of `change` that differs from `router`: empty when the edit would change nothing. */
export function settingsChanged(
  router: RouterSettings,
  change: Partial<RouterSettings>,
): Partial<RouterSettings> {
  return Object.fromEntries(
    Object.entries(change).filter(([field, value]) => router[field as keyof RouterSettings] !== value),
  );
}

/**
 * The router's settings changed as `changed` says (`settingsChanged`), audited with what each field
 * was, so that an edit can be undone from the log. Answers the router as it now is.
 */
export async function editRouterAudited(
  tx: Executor,
  actor: Actor,
  now: Date,
  router: EditedRouter,
  changed: Partial<RouterSettings>,
): Promise<EditedRouter> {
  await tx.update(routers).set(changed).where(eq(routers.id, router.id));
  await audit(tx, actor, now, {
    action: "router.edited",
    entity: "router",
    entityId: router.id,
    details: {
      name: router.name,
      changed,
      from: Object.fromEntries(
        Object.keys(changed).map((field) => [field, router[field as keyof RouterSettings]]),
      ),
    },
  });
  const { id, name, host, port, tls, username } = router;
  return { id, name, host, port, tls, username, ...changed };
}

/**
 * A router's new password, sealed, and an audit entry that names the router only (never the
 * password). Null when the router is gone: nothing is written then.
 */
export async function changeRouterPasswordAudited(
  tx: Executor,
  box: SecretBox,
  actor: Actor,
  now: Date,
  routerId: number,
  password: string,
): Promise<{ id: number; name: string } | null> {
  const [updated] = await tx
    .update(routers)
    .set({ passwordEncrypted: box.seal(password) })
    .where(eq(routers.id, routerId))
    .returning({ id: routers.id, name: routers.name });
  if (!updated) return null;
  await audit(tx, actor, now, {
    action: "router.password_changed",
    entity: "router",
    entityId: updated.id,
    details: { name: updated.name },
  });
  return updated;
}
