import type { AccountSummary } from "../../billing/accounts.ts";
import { formatKes } from "../../billing/money.ts";
import { displayPhone } from "../../lib/phone.ts";
import { formatDate, formatDateTime } from "../../messaging/render.ts";
import type { SubscriberCard } from "./queries.ts";
import type { AdminCommand } from "./roles.ts";

/** The admin chat's texts: English, plain (no parse mode, so nothing typed needs escaping). */

export const USAGE: Readonly<Record<AdminCommand, string>> = {
  help: "/help — what you may do",
  plans: "/plans — the plans, with price, speed and period",
  plan_add:
    "/plan_add <code> <pppoe|hotspot> <price KES> <every> <months|days|hours> <speed> <name…> — a new plan",
  plan_edit:
    "/plan_edit <code> <price|speed|name|name_sw|cap_gb|active> <value> — change a plan (a price applies from each next period)",
  extend: "/extend <account> <days> — free days of service, 1–90 (asks first)",
  plan: "/plan <account> <plan code> — move to another plan, quoted first (asks first)",
  cancel: "/cancel <account> [reason] — end a subscription; the router account is removed (asks first)",
  place: "/place <account> <router> — put a subscriber on a router, or move them to another (asks first)",
  signups: "/signups — self sign-ups waiting for approval, and paid ones no router serves yet",
  add: "/add — add a subscriber, one question at a time (/cancel_dialog stops)",
  customer_edit:
    "/customer_edit <account> <phone | name> <value…> — a new phone number or a corrected name (asks first)",
  resubscribe:
    "/resubscribe <account> <plan code> [router] — a customer whose subscription ended comes back on the same account (asks first)",
  broadcast:
    "/broadcast <router NAME | plan CODE | area NAME | all> <text> — a notice to those subscribers (asks first)",
  stats: "/stats — subscribers, money collected, MRR, ARPU, who owes, who expires in 24 h",
  export: "/export <customers|payments|invoices> — the table as a CSV file",
  import:
    "/import — send a customers CSV file (the format of /export customers): a dry run row by row, then import (asks first)",
  report: "/report [YYYY-MM] — revenue and subscribers per month: a chart (PNG) and the figures (CSV)",
  vouchers:
    "/vouchers <plan code> <count> — a batch of hotspot vouchers as a printable A4 PDF (1–500), in a private chat",
  sold: "/sold <code…> | /sold batch <number> [paid <amount>] — printed vouchers a reseller sold go live now; with paid, the cash they paid is recorded (asks first)",
  find: "/find <phone | account | name> — look a subscriber up",
  sub: "/sub <account> — a subscriber's card",
  unmatched: "/unmatched — payments that matched no account",
  pay: "/pay <account> <amount> [note] — record a cash payment (asks first)",
  adjust:
    "/adjust <account> <+amount | -amount> <reason…> — correct a balance: + credits, - charges (asks first)",
  resume: "/resume <account> [reason] — bring service back (asks first)",
  suspend: "/suspend <account> [reason] — cut service off (asks first)",
  assign: "/assign <receipt | #number> <account> — credit an unmatched payment to an account",
  refunded:
    "/refunded <receipt | #number> <reason…> — an unmatched payment's money was given back: it leaves the queue (asks first)",
  sell_voucher:
    "/sell_voucher <receipt | #number> <plan code> — a voucher bought but not delivered (held in /unmatched): text its payer a code of that plan",
  prompt_paid:
    "/prompt_paid <#prompt> <receipt> — a payment prompt M-Pesa never answered for, found paid on its statement: credit it (asks first)",
  admins: "/admins — who may use this chat",
  admin_add: "/admin_add <telegram id> <owner|admin|support|viewer> [name] — add an admin or change a role",
  admin_remove: "/admin_remove <telegram id> — remove an admin",
  routers: "/routers — each router's health: last contact, queue, dead jobs, last error",
  failed: "/failed — messages and router jobs given up, newest first",
  resend:
    "/resend <#number> [phone] — a message /failed lists sent again (a voucher code: or by SMS to another number)",
  audit: "/audit <account | telegram id> [n] — the last n audit entries (default 10, at most 50)",
  sync: "/sync <router> [dry] — compare a router with the database and repair it (dry: report only)",
  retry: "/retry <router> — send a router's given-up jobs again (and those for any router)",
  router_add: "/router_add — add a router, one question at a time; the password last, its message deleted",
  router_edit: "/router_edit <router> <host|port|user|tls> <value> — change a router's connection",
  router_password: "/router_password <router> — a router's new password (its message is deleted)",
  router_cert:
    "/router_cert <router> [fingerprint] — the API-SSL certificate a router presented; with the fingerprint read on the router, pin it",
};

/** A clause as the start of a sentence: "move TD00001 …" → "Move TD00001 …". */
export const capitalised = (text: string) => text.charAt(0).toUpperCase() + text.slice(1);

export const balanceText = (cents: number) =>
  cents < 0 ? `${formatKes(cents)} (owes ${formatKes(-cents)})` : formatKes(cents);

export function findLine(s: AccountSummary, timezone: string): string {
  const status = s.subscription
    ? `${s.subscription.status}${s.subscription.suspendedReason ? ` (${s.subscription.suspendedReason})` : ""}`
    : "no subscription";
  const until = s.periodEnd ? `, until ${formatDate("en", s.periodEnd, timezone)}` : "";
  return `${s.customer.accountNumber} · ${s.customer.name} · ${displayPhone(s.customer.phone)}\n   ${status}, ${s.plan?.name ?? "no plan"}${until}, balance ${balanceText(s.balanceCents)}`;
}

export function cardText(card: SubscriberCard, timezone: string): string {
  const { summary: s } = card;
  const sub = s.subscription;
  const lines = [
    `${s.customer.accountNumber} · ${s.customer.name}`,
    `Phone: ${displayPhone(s.customer.phone)}`,
    `Plan: ${s.plan ? `${s.plan.name} (${formatKes(s.plan.priceCents)} per ${periodText(s.plan.periodCount, s.plan.periodUnit)})` : "none"}`,
    `Router: ${card.routerName ?? `none (/place ${s.customer.accountNumber} <router> puts it on one)`}`,
    `Status: ${sub ? `${sub.status}${sub.suspendedReason ? ` (${sub.suspendedReason})` : ""}` : "no subscription"}`,
  ];
  if (sub)
    lines.push(
      `Period: ${formatDate("en", sub.currentPeriodStart, timezone)} – ${formatDate("en", sub.currentPeriodEnd, timezone)}${sub.status === "pending" ? " (not paid yet)" : ""}`,
    );
  lines.push(`Balance: ${balanceText(s.balanceCents)}`);
  lines.push(card.lastPayments.length ? "Last payments:" : "Last payments: none");
  for (const p of card.lastPayments)
    lines.push(
      `  • ${formatDateTime("en", p.receivedAt, timezone)} ${formatKes(p.amountCents)} ${p.method} ${p.providerRef}`,
    );
  lines.push(card.openInvoices.length ? "Open invoices:" : "Open invoices: none");
  for (const i of card.openInvoices)
    lines.push(
      `  • #${i.id} ${formatKes(i.amountCents - i.paidCents)} due ${formatDate("en", i.dueAt, timezone)}${i.paidCents ? ` (of ${formatKes(i.amountCents)})` : ""}`,
    );
  const p = card.lastProvisioning;
  lines.push(
    p
      ? `Last provisioning: ${p.action} — ${p.status}${p.status === "done" && p.doneAt ? ` ${formatDateTime("en", p.doneAt, timezone)}` : ""}${p.lastError ? ` (${p.lastError.slice(0, 120)})` : ""}`
      : "Last provisioning: none",
  );
  return lines.join("\n");
}

/** `month`, `3 days`: a plan's period as a sentence says it. */
const periodText = (count: number, unit: string) =>
  count === 1 ? unit.replace(/s$/, "") : `${count} ${unit}`;
