import { InlineKeyboard, Keyboard } from "grammy";
import type { Language } from "../../db/schema/index.ts";
import type { ChatView } from "../chat-menu.ts";
import { botText } from "./texts.ts";

/** `m:<step>:<key>`: the step binds the button to the screen it was shown on (64 bytes at most). */
export const callbackPattern = /^m:(\d{1,9}):(\d{1,3})$/;

export const callbackData = (step: number, key: string) => `m:${step}:${key}`;

/** A menu screen's choices as inline buttons: one choice a row, then Back and Home side by side. */
export function menuKeyboard(view: ChatView): InlineKeyboard | undefined {
  if (view.end || view.options.length === 0) return undefined;
  const isNav = (key: string) => key === "0" || key === "00";
  // No empty row: Telegram refuses one.
  const rows = view.options
    .filter((o) => !isNav(o.key))
    .map((o) => [InlineKeyboard.text(`${o.key}. ${o.label}`, callbackData(view.step, o.key))]);
  const nav = view.options
    .filter((o) => isNav(o.key))
    .map((o) => InlineKeyboard.text(o.label, callbackData(view.step, o.key)));
  if (nav.length > 0) rows.push(nav);
  return InlineKeyboard.from(rows);
}

/** Telegram's own "share my phone number" button. */
export const contactKeyboard = (language: Language) =>
  new Keyboard().requestContact(botText(language, "shareContact")).resized().oneTime();

export const viewText = (view: ChatView) => view.lines.join("\n").trim() || "…";
