import { html, raw } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";
import { formatKes } from "../billing/money.ts";
import type { PortalTheme } from "./colours.ts";
import { type HotspotVars, hotspotLoginHref, hotspotParams, hotspotQuery, safeLoginUrl } from "./hotspot.ts";
import type { PlanCard, PortalStatus } from "./service.ts";
import { type PortalLanguage, pt, scriptCatalog } from "./text.ts";

/** What the page shows first; the script takes over from there. */
export type PageView =
  | { kind: "buy"; error?: string; voucherError?: string; phone?: string; planId?: number }
  | { kind: "wait"; token: string; status: PortalStatus }
  | { kind: "login"; username: string; password: string; status?: PortalStatus; unchecked?: boolean };

export interface PageModel {
  language: PortalLanguage;
  isp: string;
  supportPhone: string;
  theme: PortalTheme;
  /** `/portal/<router>`, URL-encoded. */
  base: string;
  plans: PlanCard[];
  hotspot: HotspotVars;
  /** Where `hotspot.linkLoginOnly` may point (`safeLoginUrl`). */
  loginHosts: readonly string[];
  /** A fresh idempotency key for the purchase form. */
  key: string;
  view: PageView;
  pollMs: number;
}

const json = (value: unknown) =>
  raw(
    JSON.stringify(value)
      .replace(/</g, "\\u003c")
      .replace(/\u2028/g, "\\u2028")
      .replace(/\u2029/g, "\\u2029"),
  );

function css(t: PortalTheme): string {
  return `*{box-sizing:border-box}html{-webkit-text-size-adjust:100%}
body{margin:0;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:${t.text};background:${t.background}}
header{background:${t.brand};color:${t.onBrand};padding:12px 16px;display:flex;justify-content:space-between;align-items:center;gap:8px}
header h1{font-size:1.25rem;margin:0}header a{color:${t.onBrand};font-weight:600}
main{max-width:480px;margin:0 auto;padding:12px 16px 24px}
h2{font-size:1.1rem;margin:20px 0 8px;color:${t.accent}}
fieldset{border:0;margin:0;padding:0}legend{font-weight:700;font-size:1.1rem;color:${t.accent};margin:8px 0}
.plan{display:block;background:${t.card};border:2px solid ${t.card};border-radius:10px;padding:10px 12px;margin:0 0 8px;cursor:pointer}
.plan:has(input:checked){border-color:${t.accent}}
.plan input{width:20px;height:20px;vertical-align:middle;margin:0 8px 0 0;accent-color:${t.accent}}
.plan .name{font-weight:700}.plan .price{float:right;font-weight:700;color:${t.accent}}
.plan .terms{display:block;color:${t.muted};font-size:.9rem;margin-left:28px}
label.field{display:block;font-weight:600;margin:14px 0 4px}
input[type=tel],input[type=text]{width:100%;font-size:1.1rem;padding:10px;border:2px solid ${t.muted};border-radius:8px;color:${t.text};background:${t.background}}
.hint{color:${t.muted};font-size:.9rem;margin:4px 0 0}
button,a.button{display:block;width:100%;margin:14px 0 0;padding:12px;font-size:1.1rem;font-weight:700;border:0;border-radius:8px;background:${t.brand};color:${t.onBrand};cursor:pointer;text-align:center;text-decoration:none}
button[disabled]{opacity:.7}
.error{background:${t.errorBackground};color:${t.error};border-radius:8px;padding:8px 10px;margin:10px 0 0}
.box{background:${t.card};border-radius:10px;padding:12px;margin:12px 0}
.code{font:700 1.5rem/1.2 ui-monospace,monospace;letter-spacing:.12em}
footer{text-align:center;color:${t.muted};padding:0 16px 24px;font-size:.9rem}
[hidden]{display:none!important}
@media (prefers-reduced-motion:no-preference){.spin{animation:spin 1s linear infinite}}
.spin{width:28px;height:28px;border:4px solid ${t.card};border-top-color:${t.accent};border-radius:50%;margin:8px auto}
@keyframes spin{to{transform:rotate(360deg)}}`;
}

/** The page's script: pays, follows the payment, logs in. No framework, a few kilobytes. */
const script = `(function(){
var D=JSON.parse(document.getElementById("portal-data").textContent),T=D.text;
function $(id){return document.getElementById(id)}
function show(id,on){$(id).hidden=!on}
function say(id,text){var e=$(id);e.textContent=text||"";e.hidden=!text}
function newKey(){var a=new Uint8Array(16);crypto.getRandomValues(a);return Array.prototype.map.call(a,function(b){return("0"+b.toString(16)).slice(-2)}).join("")}
function post(path,body){return fetch(D.base+path,{method:"POST",headers:{"content-type":"application/json","accept":"application/json"},body:JSON.stringify(body)}).then(function(r){return r.json().catch(function(){return{}}).then(function(b){return{ok:r.ok,body:b}})})}
var buy=$("buy"),payBtn=$("pay"),busy=false,timer=null;
function loginHref(user,pass){
  var u=new URL(D.login);u.searchParams.set("username",user);u.searchParams.set("password",pass);
  if(D.dst){u.searchParams.set("dst",D.dst)}
  return u.href;
}
function login(user,pass){
  $("code").textContent=user;show("done",true);
  var p=$("done-preparing");if(p){p.hidden=true}
  var a=$("login");
  if(!a||!D.login){return}
  a.href=loginHref(user,pass);show("login",true);
  location.assign(a.href);
}
function poll(token,started){
  fetch(D.base+"/status/"+encodeURIComponent(token)+"?lang="+D.lang,{headers:{accept:"application/json"}})
  .then(function(r){if(r.status===404){throw new Error("gone")}return r.json()})
  .then(function(s){
    if(s.state==="paid"&&s.voucher){
      say("paid-text",s.message);
      if(s.ready||Date.now()-started>D.readyWaitMs){show("wait",false);login(s.voucher.username,s.voucher.password);return}
      show("preparing",true);
    }else if(s.state!=="pending"){show("wait",false);say("result",s.message);show("again",true);return}
    timer=setTimeout(function(){poll(token,started)},Date.now()-started>60000?D.pollMs*2:D.pollMs);
  })
  .catch(function(){timer=setTimeout(function(){poll(token,started)},D.pollMs*2)});
}
// The language link carries the payment being followed, so that switching language keeps it.
function linkToken(token){var a=$("lang"),u=new URL(a.href);if(token){u.searchParams.set("t",token)}else{u.searchParams.delete("t")}a.href=u.href}
function wait(token){linkToken(token);show("buy",false);show("again",false);say("result","");show("wait",true);poll(token,Date.now())}
if(buy){buy.addEventListener("submit",function(e){
  e.preventDefault();if(busy)return;
  var plan=buy.querySelector("input[name=plan]:checked");
  if(!plan){say("buy-error",T["pay.choose"]);return}
  busy=true;payBtn.disabled=true;say("buy-error","");
  post("/pay",{plan:plan.value,phone:buy.elements.phone.value,key:buy.elements.key.value,lang:D.lang,mac:D.hotspot.mac})
  .then(function(r){
    if(!r.ok){
      // The package's price changed since the page was drawn: its card now shows the new one.
      if(r.body.plan){plan.value=r.body.plan.choice;plan.setAttribute("data-price",r.body.plan.price);plan.parentNode.querySelector(".price").textContent=r.body.plan.price}
      say("buy-error",r.body.error||T["error.generic"]);buy.elements.key.value=newKey();return}
    $("wait-text").textContent=T["wait.body"].replace("{amount}",plan.getAttribute("data-price"));wait(r.body.token);
  })
  .catch(function(){say("buy-error",T["error.network"])})
  .then(function(){busy=false;payBtn.disabled=false});
})}
$("again").addEventListener("click",function(e){e.preventDefault();linkToken("");buy.elements.key.value=newKey();show("again",false);say("result","");show("wait",false);show("buy",true);buy.elements.phone.focus()});
var vf=$("voucher");vf.addEventListener("submit",function(e){
  e.preventDefault();var btn=$("voucher-go");btn.disabled=true;say("voucher-error","");
  post("/voucher",{code:vf.elements.code.value,lang:D.lang,mac:D.hotspot.mac,ip:D.hotspot.ip})
  .then(function(r){if(!r.ok){say("voucher-error",r.body.error||T["error.generic"]);return}show("buy",false);$("done-heading").textContent=T["voucher.accepted"];$("code-label").textContent=T["voucher.code"].replace("{code}","");login(r.body.username,r.body.password)})
  .catch(function(){say("voucher-error",T["error.network"])})
  .then(function(){btn.disabled=false});
});
if(D.token){wait(D.token)}else if(D.preparing){poll(D.preparing,Date.now())}
})();`;

export function renderPortalPage(m: PageModel): HtmlEscapedString | Promise<HtmlEscapedString> {
  const t = (key: Parameters<typeof pt>[1], params?: Record<string, string | number>) =>
    pt(m.language, key, params);
  const other: PortalLanguage = m.language === "en" ? "sw" : "en";
  const loginUrl = safeLoginUrl(m.hotspot.linkLoginOnly, m.loginHosts);
  const view = m.view;
  const buyView = view.kind === "buy" ? view : null;
  const token = view.kind === "wait" && view.status.state === "pending" ? view.token : null;
  const result = view.kind === "wait" && view.status.state !== "pending" ? view.status : null;
  // Paid, but the hotspot user is not on the router yet: a login now would be refused. The page
  // follows it (the script by polling, without one by refreshing) and links the login once it is.
  const preparing =
    view.kind === "wait" && view.status.state === "paid" && !view.status.ready ? view.token : null;
  // A printed code typed in the voucher box: nothing was paid here, and no SMS carries it.
  const printed = view.kind === "login" && view.status === undefined;
  const credentials =
    view.kind === "login"
      ? { username: view.username, password: view.password }
      : view.kind === "wait" && view.status.voucher
        ? view.status.voucher
        : null;
  const data = {
    lang: m.language,
    base: m.base,
    text: scriptCatalog(m.language),
    hotspot: { mac: m.hotspot.mac, ip: m.hotspot.ip },
    login: loginUrl,
    dst: m.hotspot.dst,
    token,
    preparing,
    pollMs: m.pollMs,
    readyWaitMs: 30_000,
  };
  const hidden = (name: string, value: string) =>
    value ? html`<input type="hidden" name="${name}" value="${value}">` : "";
  const hotspotFields = (Object.entries(hotspotParams) as [keyof HotspotVars, string][])
    .filter(([key]) => key !== "error")
    .map(([key, name]) => hidden(name, m.hotspot[key]));
  const query = (extra: Record<string, string>) => hotspotQuery(m.hotspot, extra);

  return html`<!DOCTYPE html>
<html lang="${m.language}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="theme-color" content="${m.theme.brand}">
<title>${t("page.title", { isp: m.isp })}</title>
${token || preparing ? html`<noscript><meta http-equiv="refresh" content="5"></noscript>` : ""}
<style>${raw(css(m.theme))}</style>
</head>
<body>
<header>
<h1>${t("page.title", { isp: m.isp })}</h1>
<a href="${m.base}${query({ error: m.hotspot.error, lang: other, t: view.kind === "wait" ? view.token : "" })}" hreflang="${other}" lang="${other}" id="lang">${pt(m.language, "lang.switch")}</a>
</header>
<main>
<p>${t("page.intro")}</p>
${m.hotspot.error ? html`<p class="error" role="alert">${t("error.hotspot", { error: m.hotspot.error })}</p>` : ""}
<form id="buy" method="post" action="${m.base}/pay${query({ lang: m.language })}"${view.kind === "buy" ? "" : raw(" hidden")}>
<fieldset>
<legend>${t("plans.heading")}</legend>
${m.plans.length === 0 ? html`<p>${t("plans.none")}</p>` : ""}
${m.plans.map(
  (p) => html`<label class="plan" for="plan-${p.id}">
<input type="radio" id="plan-${p.id}" name="plan" value="${p.choice}" data-price="${p.price}" required${buyView?.planId === p.id ? raw(" checked") : ""}>
<span class="name">${p.name}</span> <span class="price">${p.price}</span>
<span class="terms">${p.speed} · ${p.validity} · ${p.data}</span>
</label>`,
)}
</fieldset>
<label class="field" for="phone">${t("phone.label")}</label>
<input id="phone" name="phone" type="tel" inputmode="tel" autocomplete="tel" required maxlength="20" aria-describedby="phone-hint" value="${buyView?.phone ?? ""}">
<p class="hint" id="phone-hint">${t("phone.hint")}</p>
<input type="hidden" name="key" value="${m.key}">
<input type="hidden" name="lang" value="${m.language}">
${hotspotFields}
<button type="submit" id="pay">${t("pay.button")}</button>
<p class="error" id="buy-error" role="alert"${buyView?.error ? "" : raw(" hidden")}>${buyView?.error ?? ""}</p>
</form>
<section id="wait" aria-live="polite"${token ? "" : raw(" hidden")}>
<h2>${t("wait.heading")}</h2>
<div class="spin" aria-hidden="true"></div>
<p id="wait-text">${view.kind === "wait" ? t("wait.body", { amount: formatKes(view.status.amountCents) }) : t("status.pending")}</p>
<p id="preparing" hidden>${t("paid.preparing")}</p>
</section>
<p class="error" id="result" role="alert"${result && !result.voucher ? "" : raw(" hidden")}>${result && !result.voucher ? result.message : ""}</p>
<a id="again" class="button" href="${m.base}${query({ lang: m.language })}"${result && !result.voucher ? "" : raw(" hidden")}>${t("retry")}</a>
<section id="done" class="box" aria-live="polite"${credentials ? "" : raw(" hidden")}>
<h2 id="done-heading">${t(printed ? "voucher.accepted" : "paid.heading")}</h2>
<p id="paid-text" hidden></p>
<p><span id="code-label">${t(printed ? "voucher.code" : "paid.code", { code: "" })}</span><span class="code" id="code">${credentials?.username ?? ""}</span></p>
${preparing ? html`<p id="done-preparing">${t("paid.preparing")}</p>` : ""}
${view.kind === "login" && view.unchecked ? html`<p id="unchecked">${t("voucher.unchecked")}</p>` : ""}
${
  loginUrl
    ? html`<a id="login" class="button" href="${credentials && !preparing ? hotspotLoginHref(loginUrl, { ...credentials, dst: m.hotspot.dst }) : loginUrl}"${credentials && !preparing ? "" : raw(" hidden")}>${t("paid.login")}</a>`
    : html`<p id="type-code">${t("paid.typeCode")}</p>`
}
</section>
<section aria-labelledby="voucher-heading">
<h2 id="voucher-heading">${t("voucher.heading")}</h2>
<form id="voucher" method="post" action="${m.base}/voucher${query({ lang: m.language })}">
<label class="field" for="voucher-code">${t("voucher.label")}</label>
<input id="voucher-code" name="code" type="text" autocomplete="off" autocapitalize="characters" spellcheck="false" maxlength="20" required>
<input type="hidden" name="lang" value="${m.language}">
${hotspotFields}
<button type="submit" id="voucher-go">${t("voucher.button")}</button>
<p class="error" id="voucher-error" role="alert"${buyView?.voucherError ? "" : raw(" hidden")}>${buyView?.voucherError ?? ""}</p>
</form>
</section>
</main>
<footer>${t("help", { support: m.supportPhone })}</footer>
<script type="application/json" id="portal-data">${json(data)}</script>
<script>${raw(script)}</script>
</body>
</html>`;
}
