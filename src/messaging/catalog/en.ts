/**
 * Every subscriber-facing string in English: USSD/chat menu screens (`menu.*`) and SMS (`sms.*`).
 * Placeholders are `{name}`; a name ending in `Cents` is an amount, one ending in `At` an instant.
 * Menu strings must stay plain ASCII: USSD handsets show nothing else reliably.
 */
export const en = {
  "menu.nav.back": "Back",
  "menu.nav.home": "Home",
  "menu.nav.more": "More",
  "menu.nav.confirm": "Confirm",
  "menu.hint.invalid": "Invalid choice.",
  "menu.hint.amount": "Enter a whole amount in KES.",
  "menu.hint.range": "Amount must be {minCents} to {maxCents}.",
  "menu.hint.phone": "Enter a Kenyan mobile number, e.g. 0712 345 678.",

  "menu.main.title": "{isp}",
  "menu.main.account": "My account",
  "menu.main.pay": "Pay",
  "menu.main.voucher": "Buy hotspot voucher",
  "menu.main.changePlan": "Change plan",
  "menu.main.language": "Language",
  "menu.main.help": "Help",
  "menu.main.signup": "How to sign up",

  "menu.account.plan": "Plan: {plan}",
  "menu.account.status": "Status: {status}",
  "menu.account.expires": "Expires: {periodEndAt}",
  "menu.account.expired": "Expired: {periodEndAt}",
  "menu.account.due": "Amount due: {amountCents}",
  "menu.account.credit": "Balance: {amountCents}",
  "menu.account.lastPayment": "Last payment: {amountCents}, {receivedAt}",
  "menu.account.noPayment": "No payment yet",
  "menu.account.noPlan": "Account {account} has no plan yet.",
  "menu.account.closed":
    "The sign-up of account {account} was not approved, so it has no plan and nothing is owed. To get connected, call or WhatsApp {support}.",
  "menu.status.active": "Active",
  "menu.status.pending": "Awaiting first payment",
  "menu.status.suspended": "Suspended",
  "menu.status.cancelled": "Cancelled",

  "menu.pay.due": "You owe {amountCents}.",
  "menu.pay.nothingDue": "Nothing is due. Balance: {balanceCents}.",
  "menu.pay.payDue": "Pay {amountCents} now",
  "menu.pay.other": "Pay another amount",
  "menu.pay.otherOnly": "Pay an amount",
  "menu.pay.fromOther": "Pay from another M-Pesa number",
  "menu.pay.enterPhone": "Enter the M-Pesa number to pay from (e.g. 0712 345 678):",
  "menu.pay.enterAmount": "Enter amount in KES ({minCents} to {maxCents}):",
  "menu.pay.confirm": "Pay {amountCents} to {isp} from M-Pesa {phone}?",
  "menu.pay.sent":
    "Enter your M-Pesa PIN on the prompt to pay {amountCents}. You will get a message when it is received.",
  "menu.pay.sentOther":
    "The prompt to pay {amountCents} is on M-Pesa {phone}: the PIN is entered there. You will get a message when it is received.",

  "menu.voucher.choose": "Choose a hotspot voucher:",
  "menu.voucher.item": "{plan}: {terms}",
  "menu.voucher.none": "No hotspot vouchers are on sale now. Please try later.",
  "menu.voucher.confirm": "Buy this voucher with M-Pesa {phone}?",
  "menu.voucher.sent":
    "Enter your M-Pesa PIN on the prompt to pay {amountCents}. Your voucher code will be sent to you.",
  "menu.pay.closed":
    "The sign-up of account {account} was not approved, so nothing is owed and it takes no payments. To get connected, call or WhatsApp {support}.",
  "menu.voucher.foreignPhone":
    "Vouchers are paid with M-Pesa from a phone number from {countries}, and the number you are using here is not one. Connect to the hotspot's Wi-Fi to buy one on its page.",
  "menu.voucher.hiddenPhone":
    "Vouchers are paid with M-Pesa from your phone number, and WhatsApp has not shared yours with us. Connect to the hotspot's Wi-Fi to buy one on its page.",
  "menu.voucher.mine": "My voucher codes",
  "menu.voucher.mineTitle": "Your voucher codes:",
  "menu.voucher.mineItem": "{code}: {plan}, until {validity}",
  "menu.voucher.mineNone": "No voucher bought with {phone} in the last {lookbackDays} days is still valid.",
  "menu.voucher.minePhone": "Share your phone number to see the voucher codes bought with it.",
  "menu.voucher.code": "Voucher code: {code}",
  "menu.voucher.codeValid": "{plan}, valid until {validity}.",
  "menu.voucher.codeUse": "Use it as username and password on the hotspot.",

  "menu.plan.choose": "Now on {plan}. Choose a new plan:",
  "menu.plan.item": "{plan}: {terms}",
  "menu.plan.price": "{priceCents} for {period}",
  "menu.plan.data": "{data} data",
  "menu.plan.none": "There is no other plan to change to.",
  "menu.plan.noSubscription": "You have no plan to change. Call {support} for help.",
  "menu.plan.quotePay": "Change now. Pay {amountCents} for the rest of this period.",
  "menu.plan.quoteCredit": "Change now. {chargeCents} is taken from your balance.",
  "menu.plan.quoteFree": "Change now at no charge.",
  "menu.plan.quoteRefund": "Change now. {creditCents} goes to your balance.",
  "menu.plan.quoteScheduled": "Change on {effectiveAt}. Nothing to pay now.",
  "menu.plan.quoteNextPayment": "Change with your next payment. Nothing to pay now.",
  "menu.plan.same": "You are already on {plan}.",
  "menu.plan.gone":
    "Sorry, that plan or package is no longer offered. Nothing was charged. Please choose another.",
  "menu.plan.listChanged":
    "The plans on offer have changed. Nothing was done. Please dial again and choose again.",
  "menu.plan.notActive":
    "Your plan can be changed once your account is active. Please pay what you owe first.",
  "menu.plan.sentPay":
    "Enter your M-Pesa PIN on the prompt to pay {amountCents}. Your plan changes when it is received.",
  "menu.plan.changed": "Done. Your plan is now {plan}.",
  "menu.plan.scheduled": "Done. Your plan changes to {plan} on {effectiveAt}.",
  "menu.plan.scheduledNextPayment": "Done. Your plan changes to {plan} when you pay for the next period.",

  "menu.language.choose": "Choose language / Chagua lugha:",
  "menu.language.en": "English",
  "menu.language.sw": "Kiswahili",
  "menu.language.confirm": "Use English for menus and messages?",
  "menu.language.saved": "Language set to English.",

  "menu.period.hours.one": "1 hour",
  "menu.period.hours.many": "{count} hours",
  "menu.period.days.one": "1 day",
  "menu.period.days.many": "{count} days",
  "menu.period.months.one": "1 month",
  "menu.period.months.many": "{count} months",

  "menu.help.text": "Help: call or WhatsApp {support}. Pay by M-Pesa here or to account number {account}.",
  "menu.help.visitor": "Help: call or WhatsApp {support}. You can buy a hotspot voucher here with M-Pesa.",
  "menu.main.join": "Sign up",
  "menu.signup.choosePlan": "Sign up: choose a home internet plan",
  "menu.signup.none": "No home internet plans are on offer now. Call or WhatsApp {support}.",
  "menu.signup.name": "Type your full name:",
  "menu.signup.area": "Choose your area:",
  "menu.signup.confirm": "Sign up {name} in {area}?",
  "menu.signup.done":
    "Welcome! Your account is {account}. Pay {amountCents} by M-Pesa (Pay in this menu) to get connected. Your login details will be sent to you.",
  "menu.signup.exists": "You already have account {account}. Dial again to pay or see it.",
  "menu.signup.needPhone":
    "To sign up, first share your phone number (M-Pesa pays from it), then choose Sign up again.",
  "menu.signup.foreignPhone":
    "To sign up you need a phone number from {countries}: M-Pesa pays from it, and the number you are using here is not one. To get connected, call or WhatsApp {support}.",
  "menu.signup.hiddenPhone":
    "To sign up you need a phone number from {countries}: M-Pesa pays from it, and WhatsApp has not shared yours with us. To get connected, call or WhatsApp {support}.",
  "menu.hint.name": "Type your name: 2 to 40 letters.",
  "menu.signup.text":
    "No {isp} account on this number. To get connected, call or WhatsApp {support}. You can still buy a hotspot voucher here.",
  "menu.notCustomer": "This number has no account. Call {support} to sign up.",
  "menu.foreign.country": "Sorry, {isp} does not serve phone numbers from {country}.",
  "menu.foreign.other": "Sorry, {isp} does not serve this phone number.",

  "menu.error.payment": "Sorry, the payment request failed. Please try again later.",
  "menu.error.amountRange":
    "M-Pesa cannot be asked for this amount here. Nothing was charged. Please call or WhatsApp {support}.",
  "menu.error.tooMany": "Too many payment requests. Please wait a few minutes and try again.",
  "menu.error.busy": "Your request is being processed. You will get a message.",
  "menu.error.generic": "Sorry, something went wrong. Please try again later.",
  "menu.error.bad": "Sorry, we could not read that request. Please dial again.",

  // Why an M-Pesa prompt was not paid, by Daraja result code (`{reason}` in sms.payment_failed).
  "reason.1": "Not enough money in M-Pesa",
  "reason.2": "Amount below the M-Pesa minimum",
  "reason.3": "Amount above the M-Pesa maximum",
  "reason.4": "M-Pesa daily limit reached",
  "reason.17": "Same amount paid within 2 minutes: try again later",
  "reason.1019": "The M-Pesa prompt expired",
  "reason.1032": "You cancelled the M-Pesa prompt",
  "reason.1001": "Another M-Pesa payment was in progress on your phone",
  "reason.1025": "M-Pesa could not send the payment prompt",
  "reason.1037": "Your phone could not be reached",
  "reason.2001": "Wrong M-Pesa PIN",
  "reason.2028": "M-Pesa did not permit this payment",
  "reason.unsent": "M-Pesa could not send the payment prompt",
  // A code named above is shown in words; another one, in a language other than English, as this
  // (English shows Daraja's own description instead).
  "reason.other": "M-Pesa code {code}",

  "sms.payment_received":
    "{isp}: We received {amountCents} (M-Pesa {receipt}) for account {account}. Balance: {balanceCents}. Thank you.",
  "sms.payment_received_plain":
    "{isp}: We received {amountCents} for account {account}. Balance: {balanceCents}. Thank you.",
  "sms.payment_not_credited":
    "{isp}: We received {amountCents} for account {account}, but its sign-up was not approved, so it was not credited. Please do not pay again: we will refund you. Questions: {support}.",
  "sms.payment_failed":
    "{isp}: Your payment of {amountCents} did not go through ({reason}). Dial the menu to try again.",
  "sms.payment_failed_other":
    "{isp}: The M-Pesa prompt for {amountCents} sent to {payer} was not paid. Dial the menu to try again.",
  "sms.invoice_reminder":
    "{isp}: {amountCents} for account {account} {days}, {dueAt}. Pay by M-Pesa, {payTo}.",
  "sms.suspended": "{isp}: Your internet is suspended. Pay {amountCents} by M-Pesa, {payTo}, to restore it.",
  "sms.restored": "{isp}: Your internet is back on. Paid up to {periodEndAt}. Thank you.",
  "sms.activated":
    "{isp}: Your internet ({plan}) is now active, paid up to {periodEndAt}. PPPoE username: {username}, password: {password}",
  "sms.voucher_code":
    "{isp}: Your {plan} voucher code is {code}, valid until {validity}. Use it as username and password on the hotspot.",
  "sms.voucher_not_issued":
    "{isp}: We received {amountCents} but could not issue your voucher. Please do not pay again: we will send a code or refund you. Questions: {support}.",
  "sms.plan_changed": "{isp}: Your plan is now {plan}. Charged {chargeCents} for the rest of this period.",
  "sms.plan_changed_credit":
    "{isp}: Your plan is now {plan}. {creditCents} for the rest of this period is on your balance.",
  "sms.plan_change_scheduled": "{isp}: Your plan will change to {plan} on {effectiveAt}.",
  "sms.plan_change_next_payment": "{isp}: Your plan will change to {plan} when you pay for the next period.",
  "sms.plan_change_dropped":
    "{isp}: You stay on {plan}. The plan change set for the end of this period is cancelled.",
  "sms.welcome": "{isp}: Karibu {name}! Your account is {account}, plan {plan}. Pay by M-Pesa, {payTo}.",
  "sms.admin_alert": "{isp} alert: {text}",
  "sms.broadcast": "{isp}: {text}",
  "sms.signup_rejected":
    "{isp}: your sign-up (account {account}) was not approved and nothing is owed. If this is a mistake, call or WhatsApp {support}.",
  "sms.chat_link_code":
    "{isp}: Your code to link a chat to your account is {code}. It expires in 10 minutes. Never share it: it shows your account to whoever has it.",
} as const;

export type MessageKey = keyof typeof en;
