import { isUserId } from "./inbound.ts";
import type { OutboundMessage } from "./render.ts";

/** A refusal from the Graph API, with Meta's error code (190: bad token; 131009: bad parameter…). */
export class GraphApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: number | null,
    message: string,
    /** The answer's `Retry-After`, in seconds, when it carried one. */
    readonly retryAfterSeconds: number | null = null,
  ) {
    super(message);
    this.name = "GraphApiError";
  }
}

export interface GraphClient {
  /**
   * Sends one message to `to` (a WhatsApp id or a BSUID); resolves with Meta's message id. `signal`:
   * the caller stopped waiting (the request is cancelled); it also ends after 15 s.
   */
  send(to: string, message: OutboundMessage, signal?: AbortSignal): Promise<string>;
}

/**
 * `Retry-After` in seconds: its delta-seconds form, or an HTTP date taken against the answer's own
 * `Date` (the server's clock, not ours; without one the date is unreadable). Null when absent,
 * unreadable or past. Held to an hour: a notice waiting longer than that goes by SMS anyway, and a
 * garbled huge value must not park a message for ever.
 */
export function retryAfterOf(header: string | null, answeredAt: string | null = null): number | null {
  if (header === null) return null;
  let seconds: number;
  if (/^\s*\d{1,9}\s*$/.test(header)) seconds = Number(header);
  else {
    const until = Date.parse(header);
    const now = answeredAt === null ? Number.NaN : Date.parse(answeredAt);
    if (!Number.isFinite(until) || !Number.isFinite(now)) return null;
    seconds = Math.ceil((until - now) / 1000);
  }
  return seconds > 0 ? Math.min(seconds, 3600) : null;
}

/** A send that gets no answer in this long is given up rather than holding the chat's queue. */
const SEND_TIMEOUT_MS = 15_000;

export function createGraphClient(deps: {
  /** `https://graph.facebook.com/v21.0`, or the fake's address in tests. */
  baseUrl: string;
  phoneNumberId: string;
  token: string;
}): GraphClient {
  const url = `${deps.baseUrl.replace(/\/+$/, "")}/${encodeURIComponent(deps.phoneNumberId)}/messages`;
  return {
    async send(to, message, signal) {
      const response = await fetch(url, {
        method: "POST",
        headers: { authorization: `Bearer ${deps.token}`, "content-type": "application/json" },
        body: JSON.stringify({
          messaging_product: "whatsapp",
          recipient_type: "individual",
          // A chat known by BSUID alone has no number to send `to` (Meta would prefer `to` if given).
          ...(isUserId(to) ? { recipient: to } : { to }),
          ...message,
        }),
        signal: signal
          ? AbortSignal.any([signal, AbortSignal.timeout(SEND_TIMEOUT_MS)])
          : AbortSignal.timeout(SEND_TIMEOUT_MS),
      });
      const answer = (await response.json().catch(() => null)) as {
        messages?: { id?: string }[];
        error?: { code?: number; message?: string };
      } | null;
      if (!response.ok || !answer?.messages?.[0]?.id) {
        throw new GraphApiError(
          response.status,
          answer?.error?.code ?? null,
          answer?.error?.message ?? `Graph API answered ${response.status}`,
          retryAfterOf(response.headers.get("retry-after"), response.headers.get("date")),
        );
      }
      return answer.messages[0].id;
    },
  };
}
