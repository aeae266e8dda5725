import type { Language } from "../../menu/types.ts";

/**
 * What only the Telegram adapter says (linking, stale buttons). The menu's own texts stay in the
 * messaging catalog; these are few and belong to this channel.
 */
const texts = {
  en: {
    shareContact: "Share my phone number",
    linkHint:
      "Customers: tap the button below to share your phone number and see your account here. Everyone can buy hotspot vouchers.",
    linked: "Linked to account {account}.",
    notYours: "Please share your own contact, not someone else's.",
    noAccount: "No account uses this number. You can still buy hotspot vouchers.",
    stale: "This menu is out of date. Here is the current one.",
    foreign: "This button is not for you.",
    typeNumber: "Tap a button or type its number.",
    failed: "Sorry, something went wrong. Please try again.",
  },
  sw: {
    shareContact: "Tuma nambari yangu ya simu",
    linkHint:
      "Wateja: bonyeza kitufe hapa chini kutuma nambari yako ya simu na uone akaunti yako hapa. Kila mtu anaweza kununua vocha.",
    linked: "Imeunganishwa na akaunti {account}.",
    notYours: "Tafadhali tuma nambari yako mwenyewe, si ya mtu mwingine.",
    noAccount: "Hakuna akaunti yenye nambari hii. Bado unaweza kununua vocha.",
    stale: "Menyu hii imepitwa na wakati. Hii ndiyo ya sasa.",
    foreign: "Kitufe hiki si chako.",
    typeNumber: "Bonyeza kitufe au andika nambari yake.",
    failed: "Samahani, kuna hitilafu. Tafadhali jaribu tena.",
  },
} as const;

export type BotText = keyof (typeof texts)["en"];

export function botText(language: Language, key: BotText, params: Record<string, string> = {}): string {
  return texts[language][key].replace(/\{(\w+)\}/g, (whole, name: string) => params[name] ?? whole);
}
