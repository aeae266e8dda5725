/** The captive portal's words, in English and Kiswahili. Placeholders are `{name}`. */
export type PortalLanguage = "en" | "sw";

const en = {
  "page.title": "{isp} Wi-Fi",
  "page.intro": "Choose a package, pay with M-Pesa, and you are online. No code to type.",
  "plans.heading": "Packages",
  "plans.none": "No packages are on sale right now. Please ask the shop.",
  "plan.speed": "Speed: {speed}",
  "plan.validity": "Valid for {validity}",
  "plan.data": "Data: {data}",
  "plan.unlimited": "Data: unlimited",
  "phone.label": "M-Pesa phone number",
  "phone.hint": "For example 0712 345 678. The M-Pesa prompt goes to this phone.",
  "pay.button": "Pay with M-Pesa",
  "pay.choose": "Choose a package first.",
  "wait.heading": "Check your phone",
  "wait.body": "Enter your M-Pesa PIN on the prompt to pay {amount}. This page continues by itself.",
  "paid.heading": "Paid: you are being connected",
  "paid.code": "Your code (also sent by SMS): {code}",
  "paid.login": "Connect now",
  "paid.typeCode": "Type it as username and password on the Wi-Fi login page to connect.",
  "paid.preparing": "Preparing your access…",
  retry: "Try again",
  "voucher.heading": "Have a printed voucher?",
  "voucher.label": "Voucher code",
  "voucher.button": "Connect with code",
  "voucher.unknown": "That code is not valid. Check it and try again.",
  "voucher.other_router": "That code is for another hotspot.",
  "voucher.unsold": "That code has not been activated yet. Ask the seller to activate it.",
  "voucher.expired": "That code has expired.",
  "voucher.empty": "Type the code printed on your voucher.",
  "voucher.too_many": "Too many tries. Please wait a few minutes.",
  "voucher.accepted": "Code accepted: you are being connected",
  "voucher.code": "Your code: {code}",
  "voucher.unchecked":
    "We cannot check codes here just now: the hotspot will let you in if this code is valid.",
  "error.hotspot": "The hotspot said: {error}",
  "error.phone": "Enter an M-Pesa phone number, for example 0712 345 678.",
  "error.foreign.country": "Sorry, {isp} does not serve phone numbers from {country}.",
  "error.foreign.other": "Sorry, {isp} does not serve phone numbers from your country.",
  "error.plan": "That package is not on sale.",
  "error.price": "The price of that package has just changed: it is now {price}. Check it, then pay again.",
  "error.busy": "Too many payment prompts. Please wait a few minutes and try again.",
  "error.key_used":
    "A payment for another package or phone number was already started here. Check your phone for its M-Pesa prompt, or pay again to buy this package.",
  "error.generic": "Something went wrong. Please try again.",
  "error.network": "No connection to the portal. Check your Wi-Fi and try again.",
  "status.pending": "Waiting for your M-Pesa payment.",
  "status.paid": "Payment received. Your code is {code}.",
  "status.cancelled": "You cancelled the M-Pesa prompt. Nothing was paid.",
  "status.failed": "The payment did not go through ({reason}). Nothing was paid.",
  "status.failed.plain": "The payment did not go through. Nothing was paid.",
  "status.timed_out":
    "M-Pesa did not confirm the payment in time. If money left your account, your code will come by SMS.",
  "status.undelivered": "We received your payment but could not create your code. Please call {support}.",
  "status.uncertain":
    "M-Pesa could not confirm this payment. If money left your account, your code will come by SMS.",
  "lang.switch": "Kiswahili",
  help: "Help: {support}",
} as const;

export type PortalKey = keyof typeof en;

const sw: Record<PortalKey, string> = {
  "page.title": "Wi-Fi ya {isp}",
  "page.intro": "Chagua kifurushi, lipa kwa M-Pesa, na uko mtandaoni. Hakuna msimbo wa kuandika.",
  "plans.heading": "Vifurushi",
  "plans.none": "Hakuna vifurushi vinavyouzwa sasa. Tafadhali uliza dukani.",
  "plan.speed": "Kasi: {speed}",
  "plan.validity": "Muda: {validity}",
  "plan.data": "Data: {data}",
  "plan.unlimited": "Data: bila kikomo",
  "phone.label": "Nambari ya simu ya M-Pesa",
  "phone.hint": "Kwa mfano 0712 345 678. Ombi la M-Pesa litakuja kwenye simu hii.",
  "pay.button": "Lipa kwa M-Pesa",
  "pay.choose": "Chagua kifurushi kwanza.",
  "wait.heading": "Angalia simu yako",
  "wait.body": "Weka PIN yako ya M-Pesa kulipa {amount}. Ukurasa huu utaendelea wenyewe.",
  "paid.heading": "Umelipa: unaunganishwa",
  "paid.code": "Msimbo wako (pia umetumwa kwa SMS): {code}",
  "paid.login": "Unganisha sasa",
  "paid.typeCode":
    "Iandike kama jina la mtumiaji na nenosiri kwenye ukurasa wa kuingia wa Wi-Fi ili uunganishwe.",
  "paid.preparing": "Tunaandaa muunganisho wako…",
  retry: "Jaribu tena",
  "voucher.heading": "Una vocha iliyochapishwa?",
  "voucher.label": "Msimbo wa vocha",
  "voucher.button": "Unganisha kwa msimbo",
  "voucher.unknown": "Msimbo huo si sahihi. Uangalie kisha ujaribu tena.",
  "voucher.other_router": "Msimbo huo ni wa hotspot nyingine.",
  "voucher.unsold": "Msimbo huo bado haujawashwa. Muulize muuzaji auwashe.",
  "voucher.expired": "Msimbo huo umeisha muda wake.",
  "voucher.empty": "Andika msimbo uliochapishwa kwenye vocha yako.",
  "voucher.too_many": "Umejaribu mara nyingi mno. Tafadhali subiri dakika chache.",
  "voucher.accepted": "Msimbo umekubaliwa: unaunganishwa",
  "voucher.code": "Msimbo wako: {code}",
  "voucher.unchecked":
    "Hatuwezi kukagua misimbo hapa kwa sasa: mtandao utakuruhusu kuingia kama msimbo huu ni halali.",
  "error.hotspot": "Hotspot imesema: {error}",
  "error.phone": "Weka nambari ya simu ya M-Pesa, kwa mfano 0712 345 678.",
  "error.foreign.country": "Samahani, {isp} haihudumii nambari za simu za {country}.",
  "error.foreign.other": "Samahani, {isp} haihudumii nambari za simu za nchi yako.",
  "error.plan": "Kifurushi hicho hakiuzwi.",
  "error.price": "Bei ya kifurushi hicho imebadilika sasa hivi: sasa ni {price}. Iangalie, kisha ulipe tena.",
  "error.busy": "Maombi mengi mno ya malipo. Tafadhali subiri dakika chache kisha ujaribu tena.",
  "error.key_used":
    "Malipo ya kifurushi kingine au nambari nyingine yalikwisha anzishwa hapa. Angalia simu yako kwa ombi lake la M-Pesa, au lipa tena ili kununua kifurushi hiki.",
  "error.generic": "Kuna tatizo. Tafadhali jaribu tena.",
  "error.network": "Hakuna muunganisho na ukurasa. Angalia Wi-Fi yako kisha ujaribu tena.",
  "status.pending": "Tunasubiri malipo yako ya M-Pesa.",
  "status.paid": "Malipo yamepokelewa. Msimbo wako ni {code}.",
  "status.cancelled": "Umeghairi ombi la M-Pesa. Hakuna kilicholipwa.",
  "status.failed": "Malipo hayakufaulu ({reason}). Hakuna kilicholipwa.",
  "status.failed.plain": "Malipo hayakufaulu. Hakuna kilicholipwa.",
  "status.timed_out":
    "M-Pesa haikuthibitisha malipo kwa wakati. Ikiwa pesa zilitoka kwenye akaunti yako, msimbo utakuja kwa SMS.",
  "status.undelivered":
    "Tumepokea malipo yako lakini hatukuweza kutengeneza msimbo. Tafadhali piga {support}.",
  "status.uncertain":
    "M-Pesa haikuweza kuthibitisha malipo haya. Ikiwa pesa zilitoka kwenye akaunti yako, msimbo utakuja kwa SMS.",
  "lang.switch": "English",
  help: "Msaada: {support}",
};

const catalogs: Record<PortalLanguage, Record<PortalKey, string>> = { en, sw };

export function portalLanguage(value: unknown): PortalLanguage {
  return value === "sw" ? "sw" : "en";
}

export function pt(language: PortalLanguage, key: PortalKey, params: Record<string, string | number> = {}) {
  return catalogs[language][key].replace(/\{(\w+)\}/g, (whole, name: string) =>
    params[name] === undefined ? whole : String(params[name]),
  );
}

/** The texts the page's script writes itself (the rest comes from the server, already in words). */
const scriptKeys = [
  "pay.choose",
  "wait.body",
  "error.generic",
  "error.network",
  "voucher.accepted",
  "voucher.code",
] as const satisfies PortalKey[];

/** The script's texts in `language`: only these, so that the page carries no words it does not show. */
export function scriptCatalog(language: PortalLanguage): Record<(typeof scriptKeys)[number], string> {
  return Object.fromEntries(scriptKeys.map((key) => [key, catalogs[language][key]])) as Record<
    (typeof scriptKeys)[number],
    string
  >;
}
