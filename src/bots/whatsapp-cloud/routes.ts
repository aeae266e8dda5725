import { Hono } from "hono";
import { limitBody } from "../../lib/body-limit.ts";
import type { Logger } from "../../logger.ts";
import type { InboundMessage } from "./inbound.ts";
import { messagesOf } from "./inbound.ts";
import { isSignedBy } from "./signature.ts";
import { type FailedStatus, failedStatusesOf } from "./statuses.ts";

/** Meta's webhook bodies may be up to 3 MB (a batch of messages and statuses); a little over, not more. */
const MAX_BODY_BYTES = 3.5 * 1024 * 1024;

export interface WhatsAppRouteDeps {
  appSecret: string;
  verifyToken: string;
  phoneNumberId: string;
  logger: Logger;
  /**
   * Stores the messages and failed delivery statuses of an authentic body (chat_inbox) and starts
   * handling them; resolves once they are stored. A refusal (the database is away) answers 503, and
   * Meta delivers again later.
   */
  accept(messages: InboundMessage[], failed: FailedStatus[]): Promise<void>;
}

/**
 * The Cloud API webhook: `GET /` is Meta's subscription handshake, `POST /` its deliveries. A
 * delivery is believed only with a valid `X-Hub-Signature-256` over its raw bytes, checked before
 * anything reads them as JSON; an authentic body is answered 200 whatever it holds, once its
 * messages are stored.
 */
export function createWhatsAppRoutes(deps: WhatsAppRouteDeps): Hono {
  if (deps.verifyToken.length < 16)
    throw new Error("the WhatsApp verify token must be 16 characters or more");
  if (deps.appSecret === "") throw new Error("the WhatsApp app secret is required");
  const log = deps.logger.child({ module: "whatsapp-cloud" });
  const app = new Hono();

  app.get("/", (c) => {
    const mode = c.req.query("hub.mode");
    const token = c.req.query("hub.verify_token");
    const challenge = c.req.query("hub.challenge");
    if (mode !== "subscribe" || token !== deps.verifyToken || challenge === undefined)
      return c.text("Forbidden", 403);
    return c.text(challenge, 200);
  });

  app.post("/", limitBody(MAX_BODY_BYTES), async (c) => {
    const raw = new Uint8Array(await c.req.arrayBuffer());
    if (!isSignedBy(deps.appSecret, raw, c.req.header("x-hub-signature-256"))) {
      log.warn("whatsapp webhook with a missing or wrong signature refused");
      return c.text("Unauthorized", 401);
    }
    let body: unknown;
    try {
      body = JSON.parse(new TextDecoder().decode(raw));
    } catch {
      // Signed by Meta yet unreadable: a retry would be just as unreadable, so it is acknowledged.
      log.warn("whatsapp webhook body is not JSON; ignored");
      return c.text("OK", 200);
    }
    try {
      await deps.accept(messagesOf(body, deps.phoneNumberId), failedStatusesOf(body, deps.phoneNumberId));
    } catch (error) {
      log.error({ err: error }, "whatsapp messages could not be stored; Meta will deliver them again");
      return c.text("Unavailable", 503);
    }
    return c.text("OK", 200);
  });

  app.all("*", (c) => c.text("Not Found", 404));
  return app;
}
