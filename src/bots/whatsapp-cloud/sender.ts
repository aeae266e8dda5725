import { type ChatContent, ChatSendError, type ChatSender } from "../chat-sender.ts";
import { GraphApiError, type GraphClient } from "./graph.ts";
import { type OutboundMessage, renderView, textMessage } from "./render.ts";

/** Meta's customer service window: free-form messages only this long after the person's last one. */
export const SERVICE_WINDOW_MS = 24 * 60 * 60_000;

/** Meta's error codes that say something other than "try again". */
const OUTSIDE_WINDOW = 131047;
const UNDELIVERABLE = new Set([131026, 131030, 131051]);
const RATE_LIMITED = new Set([4, 80007, 130429, 131048, 131056]);
const RETRY_STATUSES = new Set([408, 429]);
/** OAuthException: the access token expired or was revoked. */
const TOKEN_REFUSED = 190;
const RATE_LIMIT_WAIT_SECONDS = 60;

function messageOf(content: ChatContent): OutboundMessage {
  switch (content.kind) {
    case "text":
      return textMessage(content.text);
    case "view":
      return renderView(content.view);
    case "template":
      return {
        type: "template",
        template: {
          name: content.name,
          language: { code: content.language },
          components:
            content.params.length > 0
              ? [{ type: "body", parameters: content.params.map((text) => ({ type: "text", text })) }]
              : [],
        },
      };
    case "raw":
      throw new ChatSendError("refused", "a raw call is for the channel that prepared it");
  }
}

/** The Cloud API side of the chat delivery worker: one Graph API request per outbox row. */
export function createCloudSender(graph: GraphClient): ChatSender {
  return {
    channel: "whatsapp_cloud",
    async send(to, content, signal) {
      const message = messageOf(content);
      try {
        return { messageId: await graph.send(to, message, signal) };
      } catch (error) {
        if (!(error instanceof GraphApiError)) throw new ChatSendError("retry", String(error));
        if (error.code === OUTSIDE_WINDOW) throw new ChatSendError("window", error.message);
        if (error.code !== null && UNDELIVERABLE.has(error.code))
          throw new ChatSendError("recipient", error.message);
        // Meta asked us to slow down: the row waits as long as it said (a minute when it did not
        // say; its rate-limit codes come as 400s without Retry-After), and that costs no attempt.
        const rateLimited = error.status === 429 || (error.code !== null && RATE_LIMITED.has(error.code));
        if (rateLimited)
          throw new ChatSendError("retry", error.message, error.retryAfterSeconds ?? RATE_LIMIT_WAIT_SECONDS);
        // A refused token (expired, revoked) is the account's problem, not the message's: nothing
        // goes out until it is fixed, and the message waits without using up its attempts.
        if (error.status === 401 || error.code === TOKEN_REFUSED)
          throw new ChatSendError("unavailable", `the access token was refused: ${error.message}`);
        if (error.status >= 500 || RETRY_STATUSES.has(error.status))
          throw new ChatSendError("retry", error.message);
        throw new ChatSendError("refused", error.message);
      }
    },
  };
}
