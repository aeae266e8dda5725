import type { MessageKey } from "./en.ts";

/** Kiswahili. Same keys and placeholders as `en.ts` (a test checks both ways). */
export const sw: Record<MessageKey, string> = {
  "menu.nav.back": "Rudi",
  "menu.nav.home": "Mwanzo",
  "menu.nav.more": "Zaidi",
  "menu.nav.confirm": "Thibitisha",
  "menu.hint.invalid": "Chaguo si sahihi.",
  "menu.hint.amount": "Weka kiasi kamili kwa KES.",
  "menu.hint.range": "Kiasi kiwe kati ya {minCents} na {maxCents}.",
  "menu.hint.phone": "Weka namba ya simu ya Kenya, mfano 0712 345 678.",

  "menu.main.title": "{isp}",
  "menu.main.account": "Akaunti yangu",
  "menu.main.pay": "Lipa",
  "menu.main.voucher": "Nunua vocha ya hotspot",
  "menu.main.changePlan": "Badilisha kifurushi",
  "menu.main.language": "Lugha",
  "menu.main.help": "Msaada",
  "menu.main.signup": "Jinsi ya kujisajili",

  "menu.account.plan": "Kifurushi: {plan}",
  "menu.account.status": "Hali: {status}",
  "menu.account.expires": "Kinaisha: {periodEndAt}",
  "menu.account.expired": "Kiliisha: {periodEndAt}",
  "menu.account.due": "Deni: {amountCents}",
  "menu.account.credit": "Salio: {amountCents}",
  "menu.account.lastPayment": "Malipo ya mwisho: {amountCents}, {receivedAt}",
  "menu.account.noPayment": "Bado hakuna malipo",
  "menu.account.noPlan": "Akaunti {account} haina kifurushi bado.",
  "menu.account.closed":
    "Usajili wa akaunti {account} haukukubaliwa, kwa hivyo haina kifurushi na hakuna deni. Kujiunga, piga simu au tuma WhatsApp {support}.",
  "menu.status.active": "Inatumika",
  "menu.status.pending": "Inasubiri malipo ya kwanza",
  "menu.status.suspended": "Imesimamishwa",
  "menu.status.cancelled": "Imesitishwa",

  "menu.pay.due": "Unadaiwa {amountCents}.",
  "menu.pay.nothingDue": "Huna deni. Salio: {balanceCents}.",
  "menu.pay.payDue": "Lipa {amountCents} sasa",
  "menu.pay.other": "Lipa kiasi kingine",
  "menu.pay.otherOnly": "Lipa kiasi",
  "menu.pay.fromOther": "Lipa kutoka namba nyingine ya M-Pesa",
  "menu.pay.enterPhone": "Weka namba ya M-Pesa itakayolipa (mfano 0712 345 678):",
  "menu.pay.enterAmount": "Weka kiasi kwa KES ({minCents} hadi {maxCents}):",
  "menu.pay.confirm": "Lipa {amountCents} kwa {isp} kutoka M-Pesa {phone}?",
  "menu.pay.sent":
    "Ingiza PIN yako ya M-Pesa kwenye ujumbe utakaotokea ili kulipa {amountCents}. Utapata ujumbe malipo yakipokelewa.",
  "menu.pay.sentOther":
    "Ombi la kulipa {amountCents} limetumwa kwa M-Pesa {phone}: PIN iingizwe kwenye simu hiyo. Utapata ujumbe malipo yakipokelewa.",

  "menu.voucher.choose": "Chagua vocha ya hotspot:",
  "menu.voucher.item": "{plan}: {terms}",
  "menu.voucher.none": "Hakuna vocha za hotspot zinazouzwa sasa. Tafadhali jaribu baadaye.",
  "menu.voucher.confirm": "Nunua vocha hii kwa M-Pesa {phone}?",
  "menu.voucher.sent": "Ingiza PIN yako ya M-Pesa ili kulipa {amountCents}. Utatumiwa nambari ya vocha.",
  "menu.pay.closed":
    "Usajili wa akaunti {account} haukukubaliwa, kwa hivyo hakuna deni na haipokei malipo. Kujiunga, piga simu au tuma WhatsApp {support}.",
  "menu.voucher.foreignPhone":
    "Vocha hulipwa kwa M-Pesa kutoka nambari ya simu ya {countries}, na nambari unayotumia hapa si mojawapo. Unganisha kwenye Wi-Fi ya hotspot ununue vocha kwenye ukurasa wake.",
  "menu.voucher.hiddenPhone":
    "Vocha hulipwa kwa M-Pesa kutoka nambari yako ya simu, na WhatsApp haijatushirikisha nambari yako. Unganisha kwenye Wi-Fi ya hotspot ununue vocha kwenye ukurasa wake.",
  "menu.voucher.mine": "Vocha zangu",
  "menu.voucher.mineTitle": "Nambari za vocha zako:",
  "menu.voucher.mineItem": "{code}: {plan}, hadi {validity}",
  "menu.voucher.mineNone":
    "Hakuna vocha iliyonunuliwa kwa {phone} katika siku {lookbackDays} zilizopita ambayo bado inatumika.",
  "menu.voucher.minePhone": "Tuma nambari yako ya simu uone vocha zilizonunuliwa kwa nambari hiyo.",
  "menu.voucher.code": "Nambari ya vocha: {code}",
  "menu.voucher.codeValid": "{plan}, inatumika hadi {validity}.",
  "menu.voucher.codeUse": "Itumie kama jina la mtumiaji na nenosiri kwenye hotspot.",

  "menu.plan.choose": "Kifurushi chako: {plan}. Chagua kipya:",
  "menu.plan.item": "{plan}: {terms}",
  "menu.plan.price": "{priceCents} kwa {period}",
  "menu.plan.data": "data {data}",
  "menu.plan.none": "Hakuna kifurushi kingine cha kubadilisha.",
  "menu.plan.noSubscription": "Huna kifurushi cha kubadilisha. Piga {support} kwa msaada.",
  "menu.plan.quotePay": "Badilisha sasa, lipa {amountCents} kwa muda uliobaki.",
  "menu.plan.quoteCredit": "Badilisha sasa. {chargeCents} itatolewa kwenye salio lako.",
  "menu.plan.quoteFree": "Badilisha sasa bila malipo.",
  "menu.plan.quoteRefund": "Badilisha sasa. {creditCents} itaongezwa kwenye salio lako.",
  "menu.plan.quoteScheduled": "Badilisha tarehe {effectiveAt}. Hakuna malipo sasa.",
  "menu.plan.quoteNextPayment": "Badilisha utakapolipa tena. Hakuna malipo sasa.",
  "menu.plan.same": "Tayari uko kwenye {plan}.",
  "menu.plan.gone":
    "Samahani, kifurushi hicho hakitolewi tena. Hakuna kilichotozwa. Tafadhali chagua kingine.",
  "menu.plan.listChanged":
    "Vifurushi vinavyotolewa vimebadilika. Hakuna kilichofanyika. Tafadhali piga tena uchague upya.",
  "menu.plan.notActive":
    "Kifurushi kinaweza kubadilishwa akaunti ikiwa hai. Tafadhali lipa deni lako kwanza.",
  "menu.plan.sentPay":
    "Ingiza PIN yako ya M-Pesa ili kulipa {amountCents}. Kifurushi kitabadilika malipo yakipokelewa.",
  "menu.plan.changed": "Imekamilika. Kifurushi chako sasa ni {plan}.",
  "menu.plan.scheduled": "Imekamilika. Kifurushi chako kitabadilika kuwa {plan} tarehe {effectiveAt}.",
  "menu.plan.scheduledNextPayment":
    "Imekamilika. Kifurushi chako kitabadilika kuwa {plan} utakapolipia kipindi kijacho.",

  "menu.language.choose": "Choose language / Chagua lugha:",
  "menu.language.en": "English",
  "menu.language.sw": "Kiswahili",
  "menu.language.confirm": "Tumia Kiswahili kwa menyu na jumbe?",
  "menu.language.saved": "Lugha imewekwa kuwa Kiswahili.",

  "menu.period.hours.one": "saa 1",
  "menu.period.hours.many": "saa {count}",
  "menu.period.days.one": "siku 1",
  "menu.period.days.many": "siku {count}",
  "menu.period.months.one": "mwezi 1",
  "menu.period.months.many": "miezi {count}",

  "menu.help.text":
    "Msaada: piga simu au tuma WhatsApp kwa {support}. Lipa kwa M-Pesa hapa au kwa nambari ya akaunti {account}.",
  "menu.help.visitor":
    "Msaada: piga simu au tuma WhatsApp kwa {support}. Unaweza kununua vocha ya hotspot hapa kwa M-Pesa.",
  "menu.main.join": "Jisajili",
  "menu.signup.choosePlan": "Jisajili: chagua kifurushi cha intaneti ya nyumbani",
  "menu.signup.none": "Hakuna vifurushi vya intaneti ya nyumbani sasa. Piga simu au tuma WhatsApp {support}.",
  "menu.signup.name": "Andika jina lako kamili:",
  "menu.signup.area": "Chagua eneo lako:",
  "menu.signup.confirm": "Sajili {name} eneo la {area}?",
  "menu.signup.done":
    "Karibu! Akaunti yako ni {account}. Lipa {amountCents} kwa M-Pesa (Lipa kwenye menyu hii) ili uunganishwe. Utatumiwa maelezo ya kuingia.",
  "menu.signup.exists": "Tayari una akaunti {account}. Piga tena ili ulipe au uione.",
  "menu.signup.needPhone":
    "Ili kujisajili, kwanza tuma nambari yako ya simu (M-Pesa hulipa kutoka kwayo), kisha uchague Jisajili tena.",
  "menu.signup.foreignPhone":
    "Ili kujisajili unahitaji nambari ya simu ya {countries}: M-Pesa hulipa kutoka kwayo, na nambari unayotumia hapa si mojawapo. Kujiunga, piga simu au tuma WhatsApp {support}.",
  "menu.signup.hiddenPhone":
    "Ili kujisajili unahitaji nambari ya simu ya {countries}: M-Pesa hulipa kutoka kwayo, na WhatsApp haijatushirikisha nambari yako. Kujiunga, piga simu au tuma WhatsApp {support}.",
  "menu.hint.name": "Andika jina lako: herufi 2 hadi 40.",
  "menu.signup.text":
    "Nambari hii haina akaunti ya {isp}. Kujiunga, piga simu au tuma WhatsApp {support}. Unaweza kununua vocha ya hotspot hapa.",
  "menu.notCustomer": "Nambari hii haina akaunti. Piga {support} ili kujisajili.",
  "menu.foreign.country": "Samahani, {isp} haihudumii nambari za simu za {country}.",
  "menu.foreign.other": "Samahani, {isp} haihudumii nambari hii ya simu.",

  "menu.error.payment": "Samahani, ombi la malipo halikufaulu. Tafadhali jaribu tena baadaye.",
  "menu.error.amountRange":
    "Kiasi hiki hakiwezi kuombwa kwa M-Pesa hapa. Hakuna kilichotozwa. Tafadhali piga simu au tuma WhatsApp {support}.",
  "menu.error.tooMany": "Maombi ya malipo ni mengi mno. Tafadhali subiri dakika chache ujaribu tena.",
  "menu.error.busy": "Ombi lako linashughulikiwa. Utapata ujumbe.",
  "menu.error.generic": "Samahani, hitilafu imetokea. Tafadhali jaribu tena baadaye.",
  "menu.error.bad": "Samahani, hatukuweza kusoma ombi hilo. Tafadhali piga tena.",

  "reason.1": "Pesa haitoshi kwenye M-Pesa",
  "reason.2": "Kiasi ni chini ya kiwango cha chini cha M-Pesa",
  "reason.3": "Kiasi ni zaidi ya kiwango cha juu cha M-Pesa",
  "reason.4": "Kikomo cha siku cha M-Pesa kimefikiwa",
  "reason.17": "Kiasi hicho kimelipwa ndani ya dakika 2: jaribu tena baadaye",
  "reason.1019": "Muda wa ombi la M-Pesa umeisha",
  "reason.1032": "Ulighairi ombi la M-Pesa",
  "reason.1001": "Malipo mengine ya M-Pesa yalikuwa yakiendelea kwenye simu yako",
  "reason.1025": "M-Pesa haikuweza kutuma ombi la malipo",
  "reason.1037": "Simu yako haikupatikana",
  "reason.2001": "PIN ya M-Pesa si sahihi",
  "reason.2028": "M-Pesa haikuruhusu malipo haya",
  "reason.unsent": "M-Pesa haikuweza kutuma ombi la malipo",
  "reason.other": "M-Pesa ilijibu kwa msimbo {code}",

  "sms.payment_received":
    "{isp}: Tumepokea {amountCents} (M-Pesa {receipt}) kwa akaunti {account}. Salio: {balanceCents}. Asante.",
  "sms.payment_received_plain":
    "{isp}: Tumepokea {amountCents} kwa akaunti {account}. Salio: {balanceCents}. Asante.",
  "sms.payment_not_credited":
    "{isp}: Tumepokea {amountCents} kwa akaunti {account}, lakini usajili wake haukukubaliwa, kwa hivyo haikuwekwa kwenye akaunti. Tafadhali usilipe tena: tutakurudishia pesa. Maswali: {support}.",
  "sms.payment_failed":
    "{isp}: Malipo yako ya {amountCents} hayakufaulu ({reason}). Piga menyu ujaribu tena.",
  "sms.payment_failed_other":
    "{isp}: Ombi la M-Pesa la {amountCents} lililotumwa kwa {payer} halikulipwa. Piga menyu ujaribu tena.",
  "sms.invoice_reminder":
    "{isp}: {amountCents} ya akaunti {account} {days}, tarehe {dueAt}. Lipa kwa M-Pesa, {payTo}.",
  "sms.suspended":
    "{isp}: Intaneti yako imesimamishwa. Lipa {amountCents} kwa M-Pesa, {payTo}, ili irudishwe.",
  "sms.restored": "{isp}: Intaneti yako imerudi. Umelipia hadi {periodEndAt}. Asante.",
  "sms.activated":
    "{isp}: Intaneti yako ({plan}) sasa inatumika, umelipia hadi {periodEndAt}. PPPoE jina la mtumiaji: {username}, nenosiri: {password}",
  "sms.voucher_code":
    "{isp}: Nambari ya vocha yako ya {plan} ni {code}, inatumika hadi {validity}. Itumie kama jina la mtumiaji na nenosiri kwenye hotspot.",
  "sms.voucher_not_issued":
    "{isp}: Tumepokea {amountCents} lakini hatukuweza kutoa vocha yako. Tafadhali usilipe tena: tutakutumia nambari ya vocha au kukurudishia pesa. Maswali: {support}.",
  "sms.plan_changed":
    "{isp}: Kifurushi chako sasa ni {plan}. Umetozwa {chargeCents} kwa muda uliobaki wa kipindi hiki.",
  "sms.plan_changed_credit":
    "{isp}: Kifurushi chako sasa ni {plan}. {creditCents} ya muda uliobaki wa kipindi hiki iko kwenye salio lako.",
  "sms.plan_change_scheduled": "{isp}: Kifurushi chako kitabadilika kuwa {plan} tarehe {effectiveAt}.",
  "sms.plan_change_next_payment":
    "{isp}: Kifurushi chako kitabadilika kuwa {plan} utakapolipia kipindi kijacho.",
  "sms.plan_change_dropped":
    "{isp}: Utaendelea na kifurushi {plan}. Mabadiliko yaliyopangwa mwishoni mwa kipindi hiki yameghairiwa.",
  "sms.welcome":
    "{isp}: Karibu {name}! Akaunti yako ni {account}, kifurushi {plan}. Lipa kwa M-Pesa, {payTo}.",
  "sms.admin_alert": "{isp} tahadhari: {text}",
  "sms.broadcast": "{isp}: {text}",
  "sms.signup_rejected":
    "{isp}: usajili wako (akaunti {account}) haukukubaliwa na hakuna deni. Kama ni kosa, piga simu au tuma WhatsApp kwa {support}.",
  "sms.chat_link_code":
    "{isp}: Nambari yako ya kuunganisha gumzo na akaunti yako ni {code}. Inaisha baada ya dakika 10. Usimpe mtu yeyote: inaonyesha akaunti yako kwa aliye nayo.",
};
