import type { Language } from "../../menu/types.ts";

/**
 * What only the Telegram adapter says (linking, stale buttons). The menu's own texts stay in the
 * messaging catalog; these are few and belong to this channel.
 */
const texts = {
  en: {
    shareContact: "Share my phone number",
    linkHint:
      "Customers: tap the button below to share your phone number (or send /link and your account number) to see your account here. Everyone can buy hotspot vouchers.",
    linked: "Linked to account {account}.",
    notYours: "Please share your own contact, not someone else's.",
    noAccount: "No account uses this number. You can still buy hotspot vouchers.",
    stale: "This menu is out of date: use the newest one below.",
    foreign: "This button is not for you.",
    typeNumber: "Tap a button or type its number.",
    failed: "Sorry, something went wrong. Please try again.",
    linkUsage:
      "To link this chat to your account, send /link followed by your account number, e.g. /link TN0042.",
    linkUnknown: "No account has that number. Check it and send /link again.",
    linkSent:
      "We sent a 6-digit code by SMS to the phone of account {account} (ending {ending}). Type it here within 10 minutes.",
    linkWait: "A code was sent a moment ago. Please wait a minute before asking for another.",
    linkChatLimit: "This chat has asked for too many codes today. Please try again tomorrow.",
    linkAccountLimit:
      "Several codes were sent to that account's phone in the last hour. Please try again in an hour.",
    codeWrong: "That code is not right. {left} tries left.",
    codeWrongLast: "That code is not right. 1 try left.",
    codeExpired: "That code has expired. Send /link with your account number for a new one.",
    codeExhausted: "Too many wrong codes. Send /link with your account number for a new one.",
    notLinked: "This chat is not linked to an account.",
    unlinkAsk: "Unlink this chat from account {account}? You can link it again later.",
    unlinkButton: "Unlink",
    unlinked: "This chat is no longer linked to account {account}.",
    unlinkGone: "Already done.",
    phoneNeeded:
      "To pay with M-Pesa we need your phone number: tap the button below to share your own contact.",
    phoneToFind:
      "To find the voucher codes bought with your number we need it: tap the button below to share your own contact.",
    phoneNotServed: "M-Pesa payments here need a number from a country we serve.",
  },
  sw: {
    shareContact: "Tuma nambari yangu ya simu",
    linkHint:
      "Wateja: bonyeza kitufe hapa chini kutuma nambari yako ya simu (au tuma /link na nambari ya akaunti) uone akaunti yako hapa. Kila mtu anaweza kununua vocha.",
    linked: "Imeunganishwa na akaunti {account}.",
    notYours: "Tafadhali tuma nambari yako mwenyewe, si ya mtu mwingine.",
    noAccount: "Hakuna akaunti yenye nambari hii. Bado unaweza kununua vocha.",
    stale: "Menyu hii imepitwa na wakati: tumia ya karibuni hapa chini.",
    foreign: "Kitufe hiki si chako.",
    typeNumber: "Bonyeza kitufe au andika nambari yake.",
    failed: "Samahani, kuna hitilafu. Tafadhali jaribu tena.",
    linkUsage:
      "Kuunganisha gumzo hili na akaunti yako, tuma /link na nambari ya akaunti yako, mfano /link TN0042.",
    linkUnknown: "Hakuna akaunti yenye nambari hiyo. Iangalie na utume /link tena.",
    linkSent:
      "Tumetuma nambari ya tarakimu 6 kwa SMS kwa simu ya akaunti {account} (inayoishia {ending}). Iandike hapa ndani ya dakika 10.",
    linkWait: "Nambari imetumwa sasa hivi. Tafadhali subiri dakika moja kabla ya kuomba nyingine.",
    linkChatLimit: "Gumzo hili limeomba nambari nyingi mno leo. Tafadhali jaribu tena kesho.",
    linkAccountLimit:
      "Nambari kadhaa zimetumwa kwa simu ya akaunti hiyo ndani ya saa moja iliyopita. Tafadhali jaribu tena baada ya saa moja.",
    codeWrong: "Nambari hiyo si sahihi. Majaribio {left} yamebaki.",
    codeWrongLast: "Nambari hiyo si sahihi. Jaribio 1 limebaki.",
    codeExpired: "Nambari hiyo imeisha muda. Tuma /link na nambari ya akaunti yako upate mpya.",
    codeExhausted: "Nambari nyingi zisizo sahihi. Tuma /link na nambari ya akaunti yako upate mpya.",
    notLinked: "Gumzo hili halijaunganishwa na akaunti.",
    unlinkAsk: "Ondoa muunganisho wa gumzo hili na akaunti {account}? Unaweza kuunganisha tena baadaye.",
    unlinkButton: "Ondoa",
    unlinked: "Gumzo hili halijaunganishwa tena na akaunti {account}.",
    unlinkGone: "Imeshafanyika.",
    phoneNeeded:
      "Kulipa kwa M-Pesa tunahitaji nambari yako ya simu: bonyeza kitufe hapa chini kutuma nambari yako mwenyewe.",
    phoneToFind:
      "Kupata vocha zilizonunuliwa kwa nambari yako tunaihitaji: bonyeza kitufe hapa chini kutuma nambari yako mwenyewe.",
    phoneNotServed: "Malipo ya M-Pesa hapa yanahitaji nambari ya nchi tunayohudumia.",
  },
} as const;

export type BotText = keyof (typeof texts)["en"];

export function botText(language: Language, key: BotText, params: Record<string, string> = {}): string {
  return texts[language][key].replace(/\{(\w+)\}/g, (whole, name: string) => params[name] ?? whole);
}
