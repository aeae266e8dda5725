import type { ChatView } from "../chat-menu.ts";
import type { ChatContent } from "../chat-sender.ts";

/**
 * A menu view as one text message: the screen, a blank line, then `1. Label` per option and
 * `0. Back` / `00. Main menu` for navigation; the person types the number back. WhatsApp Web's
 * buttons and lists are deprecated (they no longer show), so this is the only form it sends.
 * Mirrors the numbered fallback of the Cloud API's render.ts, so both channels read alike.
 */

/** WhatsApp's own limit is far higher; a menu longer than this is a bug, not a screen. */
export const MAX_TEXT = 4096;

export function numberedText(view: ChatView): string {
  const body = view.lines.join("\n").trim() || "…";
  const options = view.end ? [] : view.options;
  const choices = options.map((o) => `${o.key}. ${o.label}`);
  return [body, ...(choices.length > 0 ? ["", ...choices] : [])].join("\n").slice(0, MAX_TEXT);
}

/** The text of a chat message, or null for content WhatsApp Web cannot send (a template). */
export function textOf(content: ChatContent): string | null {
  if (content.kind === "text") return content.text.slice(0, MAX_TEXT);
  if (content.kind === "view") return numberedText(content.view);
  return null;
}
