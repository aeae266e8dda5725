import type { ChatView } from "../chat-menu.ts";
import { optionId } from "./inbound.ts";
import { waText } from "./texts.ts";

/**
 * A menu view as one Cloud API message: reply buttons for a few options, a list for up to ten,
 * numbered text otherwise. Meta refuses (131009) a title over its limit rather than cutting it, and
 * a cut title could hide the difference between two options, so a view whose titles do not fit is
 * sent as numbered text, which has no such limit; a number typed back works on every screen.
 */

export const MAX_BUTTONS = 3;
export const MAX_BUTTON_TITLE = 20;
export const MAX_LIST_ROWS = 10;
export const MAX_ROW_TITLE = 24;
/** Meta's limits on the body of an interactive message and of a text message. */
const MAX_INTERACTIVE_BODY = 1024;
const MAX_TEXT_BODY = 4096;

/** What goes after `messaging_product` and `to` in a send request. */
export type OutboundMessage =
  | { type: "text"; text: { body: string } }
  | {
      type: "template";
      template: {
        name: string;
        language: { code: string };
        components: { type: "body"; parameters: { type: "text"; text: string }[] }[];
      };
    }
  | {
      type: "interactive";
      interactive:
        | {
            type: "button";
            body: { text: string };
            action: { buttons: { type: "reply"; reply: { id: string; title: string } }[] };
          }
        | {
            type: "list";
            body: { text: string };
            action: { button: string; sections: { rows: { id: string; title: string }[] }[] };
          };
    };

/** Navigation (`0` back, `00` home) reads as a word; an option keeps its number, so typing it is obvious. */
const isNav = (key: string) => key === "0" || key === "00";
const titleOf = (option: { key: string; label: string }) =>
  isNav(option.key) ? option.label : `${option.key}. ${option.label}`;

const bodyOf = (view: ChatView) => view.lines.join("\n").trim() || "…";

export const textMessage = (body: string): OutboundMessage => ({
  type: "text",
  text: { body: body.slice(0, MAX_TEXT_BODY) },
});

function numbered(view: ChatView): OutboundMessage {
  const choices = view.options.map((o) => `${o.key}. ${o.label}`);
  return textMessage([bodyOf(view), ...(choices.length > 0 ? ["", ...choices] : [])].join("\n"));
}

export function renderView(view: ChatView): OutboundMessage {
  const options = view.end ? [] : view.options;
  const body = bodyOf(view);
  if (options.length === 0) return textMessage(body);
  const titles = options.map(titleOf);
  const fits = (max: number) => titles.every((t) => t.length <= max) && body.length <= MAX_INTERACTIVE_BODY;
  if (options.length <= MAX_BUTTONS) {
    if (!fits(MAX_BUTTON_TITLE)) return numbered(view);
    return {
      type: "interactive",
      interactive: {
        type: "button",
        body: { text: body },
        action: {
          buttons: options.map((o, i) => ({
            type: "reply",
            reply: { id: optionId(view.step, o.key), title: titles[i]! },
          })),
        },
      },
    };
  }
  if (options.length <= MAX_LIST_ROWS && fits(MAX_ROW_TITLE)) {
    return {
      type: "interactive",
      interactive: {
        type: "list",
        body: { text: body },
        action: {
          button: waText(view.language, "listButton"),
          sections: [
            { rows: options.map((o, i) => ({ id: optionId(view.step, o.key), title: titles[i]! })) },
          ],
        },
      },
    };
  }
  return numbered(view);
}
