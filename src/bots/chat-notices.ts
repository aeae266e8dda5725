import {
  catalogs,
  formatParam,
  isSmsTemplate,
  type MessageKey,
  messageValues,
  type Params,
  placeholders,
  renderSms,
} from "../messaging/render.ts";
import type { ChatDeliveryOptions, ClaimedRow } from "./chat-delivery.ts";
import type { ChatContent } from "./chat-sender.ts";

/**
 * A notice (a catalog template, as for SMS) as a chat receives it: free text inside the channel's
 * window, else the approved template configured for it (WhatsApp Cloud API), else not by chat.
 */

/** Catalog template → the approved template's name and the catalog parameters that fill it, in order. */
export type TemplateMap = ReadonlyMap<string, { name: string; params: readonly string[] }>;

/**
 * `payment_received=tandao_receipt:amountCents|receipt, suspended=tandao_suspended:amountCents|payTo`:
 * the form of `WHATSAPP_CLOUD_TEMPLATES`. Throws, naming the setting, on an entry it cannot read and
 * on one naming a notice or a parameter the catalogs do not have: read at start-up, such a typo would
 * otherwise only show as templates sent with empty text, or never sent.
 */
export function parseTemplateMap(text: string): TemplateMap {
  const map = new Map<string, { name: string; params: string[] }>();
  const refuse = (why: string) => new Error(`WHATSAPP_CLOUD_TEMPLATES: ${why}`);
  for (const entry of text
    .split(",")
    .map((e) => e.trim())
    .filter(Boolean)) {
    const match = /^(\w+)=([a-z0-9_]+)(?::([\w|]*))?$/.exec(entry);
    if (!match) throw refuse(`cannot read template entry "${entry}" (want ours=theirs:param|param)`);
    const notice = match[1]!;
    const params = (match[3] ?? "").split("|").filter(Boolean);
    if (!isSmsTemplate(notice)) throw refuse(`"${entry}": there is no notice named ${notice}`);
    const known = placeholders(catalogs.en[`sms.${notice}` as MessageKey]);
    const unknown = params.filter((p) => !known.includes(p));
    if (unknown.length > 0)
      throw refuse(
        `"${entry}": ${notice} has no parameter ${unknown.join(", ")} (it has ${known.join(", ") || "none"})`,
      );
    map.set(notice, { name: match[2]!, params });
  }
  return map;
}

/**
 * A notice as this chat may receive it: free text, or outside the channel's window an approved
 * template. A string says why it cannot go by chat.
 */
export function noticeContent(
  options: ChatDeliveryOptions,
  row: ClaimedRow,
  params: Params,
): ChatContent | string {
  const text = renderSms(row.language, row.template, params, options);
  if (text === null) return `unknown template: ${row.template}`;
  const windowMs = options.windows?.[row.channel];
  const lastInbound = row.last_inbound_at === null ? null : new Date(row.last_inbound_at).getTime();
  const open =
    windowMs === undefined ||
    (lastInbound !== null && options.clock.now().getTime() - lastInbound < windowMs);
  if (open) return { kind: "text", text };
  return (
    templateContent(options, row, params) ??
    `outside the ${row.channel} window and no approved template for ${row.template}`
  );
}

/** A notice as the approved template configured for it on its channel; null where none is. */
export function templateContent(
  options: ChatDeliveryOptions,
  row: ClaimedRow,
  params: Params,
): ChatContent | null {
  const template = options.templates?.[row.channel]?.get(row.template);
  if (!template) return null;
  const values = messageValues(row.language, row.template, params, options);
  return {
    kind: "template",
    name: template.name,
    language: row.language,
    // Formatted as the catalogs format them (amounts as `KES 1,500`, instants as dates).
    params: template.params.map((name) => formatParam(row.language, name, values[name], options.timezone)),
  };
}
