import { Hono } from "hono";
import type { Db } from "../db/client.ts";
import { limitBody } from "../lib/body-limit.ts";
import { addressAllowlist, type ClientAddressReader, clientAddressReader } from "../lib/client-address.ts";
import { checkPhone } from "../lib/phone.ts";
import { sameSecret } from "../lib/same-secret.ts";
import type { Logger } from "../logger.ts";
import { runMenu, type Screen, toAscii } from "../menu/engine.ts";
import { notServedView } from "../menu/not-served.ts";
import { subscriberScreens } from "../menu/screens.ts";
import { type LoadedUser, loadMenuUser } from "../menu/services.ts";
import { SessionCache } from "../menu/session-cache.ts";
import type { MenuServices, MenuSettings } from "../menu/types.ts";
import { translate } from "../messaging/render.ts";
import { renderUssd } from "./render.ts";

export interface UssdDeps {
  db: Db;
  services: MenuServices;
  settings: MenuSettings;
  logger: Logger;
  /** When set, the callback URL is `/ussd/<token>` and `/ussd` answers 404. */
  token?: string;
  /** When set, requests from any other client address answer 404 (the gateway's addresses). */
  allowedIps?: string[];
  /** Reverse proxies whose `X-Forwarded-For` is believed (see src/lib/client-address.ts). */
  trustedProxies?: string[];
  /**
   * The request's client address, where the socket does not tell it (on the Worker: Cloudflare's
   * `CF-Connecting-IP`). Default: the socket's peer, through `trustedProxies`.
   */
  clientAddress?: ClientAddressReader;
  screens?: Record<string, Screen>;
  /** What each USSD session has read, kept between its requests (default: one per route). */
  cache?: SessionCache;
}

/** Inputs beyond this are not a person typing. */
const MAX_TEXT = 640;
const MAX_INPUTS = 60;
export const maxUssdBytes = 8 * 1024;

const apology = (key: "menu.error.bad" | "menu.error.generic", language: "en" | "sw" = "en") =>
  `END ${toAscii(translate(language, key))}`;

/**
 * Africa's Talking's USSD callback: form fields `sessionId`, `serviceCode`, `phoneNumber`, `text`
 * (every input so far joined by `*`), answered `text/plain` with `CON …` or `END …`. Each request
 * replays `text` through the menu, so nothing about navigation is stored between requests. Nothing
 * here calls M-Pesa, a router or an SMS gateway: confirmed actions only record intents.
 */
export function createUssdRoutes(deps: UssdDeps): Hono {
  const app = new Hono();
  const screens = deps.screens ?? subscriberScreens;
  const cache = deps.cache ?? new SessionCache();

  // Africa's Talking's form is a few hundred bytes: a bigger body is refused before it is read.
  app.use("*", limitBody(maxUssdBytes));
  const allowed = addressAllowlist(
    deps.allowedIps,
    clientAddressReader(deps.trustedProxies, deps.clientAddress),
  );
  app.post("/:token?", async (c) => {
    const token = c.req.param("token");
    if (
      (deps.token ? token === undefined || !sameSecret(token, deps.token) : token !== undefined) ||
      (allowed && !allowed(c))
    ) {
      return c.text("Not Found", 404);
    }
    let form: Record<string, unknown>;
    try {
      // Africa's Talking posts a small urlencoded form; URLSearchParams reads it far more cheaply
      // than a general body parser, which matters on every keypress of every session.
      form = Object.fromEntries(new URLSearchParams(await c.req.text()));
    } catch {
      return c.text(apology("menu.error.bad"));
    }
    // The end-of-session notification (when pointed at the same URL) carries `status`, not `text`.
    if (typeof form.status === "string" && form.text === undefined) return c.text("OK");
    const sessionId = typeof form.sessionId === "string" ? form.sessionId.trim() : "";
    const verdict =
      typeof form.phoneNumber === "string"
        ? checkPhone(form.phoneNumber, deps.settings.servedCountries)
        : ({ kind: "invalid" } as const);
    const text = form.text === undefined ? "" : form.text;
    if (
      !sessionId ||
      sessionId.length > 128 ||
      verdict.kind === "invalid" ||
      typeof text !== "string" ||
      text.length > MAX_TEXT
    ) {
      return c.text(apology("menu.error.bad"));
    }
    // A number from a country that is not served is told so, whatever it typed.
    if (verdict.kind === "foreign") return c.text(renderUssd(notServedView(deps.settings, verdict.country)));
    const phone = verdict.e164;
    const inputs = text === "" ? [] : text.split("*");
    if (inputs.length > MAX_INPUTS) return c.text(apology("menu.error.bad"));

    const id = `ussd:${sessionId}`;
    let language: "en" | "sw" = "en";
    try {
      // Who is dialling is read once per session: a confirmed action (which may change the language or
      // the recorded outcomes) drops the copy, and outcomes missing from it are read afresh by the menu.
      // Another instance's copy may predate a language change: replaying its confirm applies it.
      const userKey = `${id}|user`;
      let loading = cache.get<LoadedUser>(userKey);
      if (!loading) {
        loading = loadMenuUser(deps.db, phone, id);
        cache.set(userKey, loading);
      }
      const { user, recorded, plans } = await loading;
      if (user.phone !== phone) return c.text(apology("menu.error.bad"));
      // A session lasts minutes and may reach any instance: the lists it was shown travel with it.
      const session = { id, channel: "ussd", plans: plans ?? {} };
      language = user.language;
      let acted = false;
      const view = await runMenu(
        {
          user,
          session,
          inputs,
          recorded,
          cache,
          onError: (error, step) => deps.logger.error({ err: error, sessionId, step }, "USSD action failed"),
          onAct: () => {
            acted = true;
            cache.delete(userKey);
          },
        },
        screens,
        deps.services,
        deps.settings,
      );
      if (acted) cache.delete(userKey);
      return c.text(renderUssd(view));
    } catch (error) {
      deps.logger.error({ err: error, sessionId, inputs: inputs.length }, "USSD request failed");
      return c.text(apology("menu.error.generic", language));
    }
  });

  app.all("*", (c) => c.text("Not Found", 404));
  return app;
}
