import type { Language } from "../../menu/types.ts";

/** What only the WhatsApp adapter says; the menu's own texts stay in the messaging catalog. */
const texts = {
  en: {
    linked: "Linked to account {account}.",
    stale: "This menu is out of date. Please choose from the newest one.",
    typeNumber: "Tap an option or type its number.",
    listButton: "Choose",
    unsupported: "Please type a number from the menu, or 'menu' to start again.",
  },
  sw: {
    linked: "Imeunganishwa na akaunti {account}.",
    stale: "Menyu hii imepitwa na wakati. Tafadhali chagua kutoka ile mpya.",
    typeNumber: "Bonyeza chaguo au andika nambari yake.",
    listButton: "Chagua",
    unsupported: "Tafadhali andika nambari kutoka kwenye menyu, au 'menu' kuanza upya.",
  },
} as const;

export type WhatsAppText = keyof (typeof texts)["en"];

export function waText(language: Language, key: WhatsAppText, params: Record<string, string> = {}): string {
  return texts[language][key].replace(/\{(\w+)\}/g, (whole, name: string) => params[name] ?? whole);
}
