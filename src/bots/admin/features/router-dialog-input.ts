import { isIP } from "node:net";
import { sql } from "drizzle-orm";
import type { Executor } from "../../../db/client.ts";
import { routers } from "../../../db/schema/index.ts";

/** A router's settings as an admin types them in the chat, and as the chat shows them back. */

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$/;
const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
export const USERNAME = /^\S{1,64}$/;

export const defaultPort = (tls: boolean) => (tls ? 8729 : 8728);

export function parseRouterName(text: string): string | null {
  const name = text.trim();
  return NAME.test(name) && !/^\d+$/.test(name) ? name : null;
}

export function parseHost(text: string): string | null {
  const host = text.trim();
  if (isIP(host)) return host;
  return HOSTNAME.test(host) ? host.toLowerCase() : null;
}

export function parsePort(text: string): number | null {
  const port = text.trim();
  if (!/^\d{1,5}$/.test(port)) return null;
  const n = Number(port);
  return n >= 1 && n <= 65_535 ? n : null;
}

export function parseYesNo(text: string): boolean | null {
  const t = text.trim().toLowerCase();
  if (["yes", "y", "tls", "true", "on", "ssl"].includes(t)) return true;
  if (["no", "n", "false", "off", "plain"].includes(t)) return false;
  return null;
}

/** Names are compared without case: `Kibera-1` and `kibera-1` are the same router to an admin. */
export async function routerNamed(db: Executor, name: string) {
  const [row] = await db
    .select()
    .from(routers)
    .where(sql`lower(${routers.name}) = ${name.trim().toLowerCase()}`)
    .limit(1);
  return row ?? null;
}

export const describeRouter = (a: {
  name: string;
  host: string;
  port: number;
  tls: boolean;
  username: string;
}) => `${a.name} at ${a.host}:${a.port}${a.tls ? " (API-SSL)" : ""}, user ${a.username}`;
