import type { MenuView } from "../menu/types.ts";

/** What Africa's Talking lets a handset show: `CON `/`END ` plus the text, 182 characters at most. */
export const USSD_MAX = 182;

export function renderUssd(view: MenuView): string {
  const text = `${view.end ? "END" : "CON"} ${view.lines.join("\n")}`;
  // The screens are laid out to fit (a test renders them all with long data); this only guards the wire.
  return text.length <= USSD_MAX ? text : text.slice(0, USSD_MAX);
}
