/**
 * The simulator page's script: plain browser JavaScript, served inline (no build step). It keeps
 * each phone's USSD session as Africa's Talking does (every input so far joined by `*`), and polls
 * one JSON endpoint for the prompts, SMS and router state. Text from the server is only ever set
 * with `textContent`.
 */
export const clientScript = String.raw`
(function () {
  "use strict";
  var cfg = window.SIMULATOR;
  var base = location.pathname.replace(/\/+$/, "");
  var SCREEN_CHARS = 182;
  var phones = {};
  var order = [];
  var tabs = document.getElementById("tabs");
  var panels = document.getElementById("panels");

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "className") node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { node.appendChild(c); });
    return node;
  }
  function post(path, body) {
    return fetch(base + path, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    }).then(function (r) { return r.json().then(function (j) { j.httpStatus = r.status; return j; }); });
  }
  function normal(phone) {
    var d = String(phone).replace(/[^0-9+]/g, "");
    if (/^0[17][0-9]{8}$/.test(d)) d = "+254" + d.slice(1);
    if (/^254[0-9]{9}$/.test(d)) d = "+" + d;
    return /^\+[0-9]{9,15}$/.test(d) ? d : null;
  }
  function sessionId() {
    return "SIM" + Date.now().toString(36) + Math.random().toString(36).slice(2, 10);
  }
  var codeParts = cfg.serviceCode.replace(/^\*|#$/g, "");

  function select(phone) {
    order.forEach(function (p) {
      var on = p === phone;
      phones[p].tab.setAttribute("aria-selected", on ? "true" : "false");
      phones[p].tab.tabIndex = on ? 0 : -1;
      phones[p].panel.hidden = !on;
    });
  }

  function open(phone) {
    if (phones[phone]) return select(phone);
    var key = phone.replace(/[^0-9]/g, "");
    var tab = el("button", { type: "button", role: "tab", id: "tab-" + key, "aria-controls": "panel-" + key, text: phone });
    tab.addEventListener("click", function () { select(phone); });
    tabs.appendChild(tab);

    var status = el("span", { className: "mode", text: "Idle" });
    var screenText = el("pre", { className: "ussd", "aria-live": "polite", text: "Dial " + cfg.serviceCode });
    var promptText = el("p", { className: "prompt-text" });
    var pin = el("input", { type: "password", inputmode: "numeric", maxlength: "4", autocomplete: "off", className: "pin" });
    var promptError = el("p", { className: "error", role: "alert" });
    var decisions = el("div", { className: "prompt-buttons" }, [
      el("button", { type: "button", className: "go", "data-decision": "pay", text: "Pay" }),
      el("button", { type: "button", "data-decision": "wrong_pin", text: "Wrong PIN" }),
      el("button", { type: "button", className: "stop", "data-decision": "cancel", text: "Cancel" }),
      el("button", { type: "button", "data-decision": "ignore", text: "Ignore" }),
    ]);
    var prompt = el("div", { className: "prompt", role: "dialog", "aria-label": "M-Pesa prompt" }, [
      promptText,
      el("label", {}, [document.createTextNode("M-Pesa PIN "), pin]),
      promptError,
      decisions,
    ]);
    prompt.hidden = true;
    var keypad = el("input", { className: "keypad", inputmode: "tel", autocomplete: "off" });
    keypad.value = cfg.serviceCode;
    var call = el("button", { type: "button", className: "go", text: "Call" });
    var end = el("button", { type: "button", className: "stop", text: "Cancel" });
    var meta = el("p", { className: "meta", text: "" });
    var handset = el("div", { className: "handset", role: "group", "aria-label": "Feature phone" }, [
      el("p", { className: "brand", text: "TANDAO PHONE" }),
      el("div", { className: "screen" }, [
        el("p", { className: "lcd-status" }, [el("span", { text: "Safaricom" }), status]),
        screenText,
        prompt,
      ]),
      el("label", { className: "keypad-label" }, [document.createTextNode("Keypad"), keypad]),
      el("div", { className: "keys" }, [call, end]),
      meta,
    ]);
    var smsList = el("ol", { className: "sms", "aria-label": "SMS received by " + phone });
    var smsEmpty = el("p", { className: "muted", text: "No SMS yet." });
    var smsCard = el("section", { className: "card", "aria-label": "SMS inbox" }, [
      el("h3", { text: "SMS inbox" }), smsEmpty, smsList,
    ]);
    var panel = el("section", { className: "phone", role: "tabpanel", id: "panel-" + key, "aria-labelledby": "tab-" + key, "data-phone": phone }, [
      el("div", { className: "card" }, [handset]),
      smsCard,
    ]);
    var p = {
      phone: phone, tab: tab, panel: panel, session: null, inputs: [],
      shownPrompt: null, smsKey: "", chat: null,
    };
    if (cfg.chats.telegram || cfg.chats.whatsapp) panel.appendChild(chatPane(p));
    var close = el("button", { type: "button", text: "Close phone " + phone });
    close.addEventListener("click", function () {
      tab.remove(); panel.remove();
      delete phones[phone];
      order = order.filter(function (x) { return x !== phone; });
      if (order.length) select(order[0]);
    });
    panel.appendChild(close);
    panels.appendChild(panel);
    phones[phone] = p;
    order.push(phone);

    function show(response) {
      var kind = response.slice(0, 4);
      var body = kind === "CON " || kind === "END " ? response.slice(4) : response;
      screenText.textContent = body.length > SCREEN_CHARS ? body.slice(0, SCREEN_CHARS) : body;
      meta.textContent = kind.trim() + " · " + body.length + " of " + SCREEN_CHARS + " characters" +
        (body.length > SCREEN_CHARS ? " (cut, as a phone would)" : "");
      if (kind === "CON ") {
        status.textContent = "Session open";
        call.textContent = "Send";
        keypad.value = "";
      } else {
        hangUp("Session ended");
      }
    }
    function hangUp(why) {
      p.session = null; p.inputs = [];
      status.textContent = why;
      call.textContent = "Call";
      keypad.value = cfg.serviceCode;
    }
    function send() {
      var typed = keypad.value.trim();
      if (!p.session) {
        var m = /^\*([0-9*]+)#$/.exec(typed);
        if (!m || (m[1] !== codeParts && m[1].indexOf(codeParts + "*") !== 0)) {
          screenText.textContent = "Connection problem or invalid MMI code.";
          meta.textContent = "This sandbox answers " + cfg.serviceCode;
          return;
        }
        p.session = sessionId();
        var extra = m[1].slice(codeParts.length + 1);
        p.inputs = extra ? extra.split("*") : [];
      } else {
        p.inputs.push(typed);
      }
      status.textContent = "Sending…";
      call.disabled = true;
      post("/api/ussd", { phone: phone, sessionId: p.session, text: p.inputs.join("*") })
        .then(function (answer) {
          if (answer.httpStatus !== 200) throw new Error(answer.error || "USSD request failed");
          show(answer.response);
        })
        .catch(function () {
          screenText.textContent = "Connection problem or invalid MMI code.";
          hangUp("Session ended");
        })
        .finally(function () { call.disabled = false; keypad.focus(); });
    }
    call.addEventListener("click", send);
    keypad.addEventListener("keydown", function (e) { if (e.key === "Enter") { e.preventDefault(); send(); } });
    end.addEventListener("click", function () {
      if (p.session) screenText.textContent = "Session cancelled.";
      hangUp("Idle");
    });
    decisions.addEventListener("click", function (e) {
      var button = e.target.closest("button");
      if (!button || !p.shownPrompt) return;
      var decision = button.getAttribute("data-decision");
      if (decision === "pay" && !/^[0-9]{4}$/.test(pin.value)) {
        promptError.textContent = "Enter your 4-digit M-Pesa PIN.";
        return;
      }
      post("/api/prompts/" + encodeURIComponent(p.shownPrompt), { decision: decision, pin: pin.value })
        .then(function (answer) {
          if (answer.httpStatus !== 200) { promptError.textContent = answer.error || "Not sent."; return; }
          p.shownPrompt = null;
          prompt.hidden = true;
          screenText.hidden = false;
          screenText.textContent = decision === "pay" ? "Sent. You will receive an M-Pesa message." : "Payment not made.";
          status.textContent = "Idle";
          poll();
        });
    });
    p.update = function (state) {
      var next = state.prompts[0] || null;
      if (next && next.checkoutRequestId !== p.shownPrompt) {
        p.shownPrompt = next.checkoutRequestId;
        promptText.textContent = "Pay " + next.amount + " to " + cfg.ispName + " (account " + next.account + ")? Enter M-Pesa PIN";
        pin.value = "";
        promptError.textContent = "";
        prompt.hidden = false;
        screenText.hidden = true;
        status.textContent = "M-Pesa";
        if (!tab.getAttribute("data-alert")) tab.setAttribute("data-alert", "1");
      } else if (!next && p.shownPrompt) {
        p.shownPrompt = null;
        prompt.hidden = true;
        screenText.hidden = false;
        screenText.textContent = "The M-Pesa prompt closed.";
      }
      var smsKey = state.sms.map(function (s) { return s.id; }).join(",");
      if (smsKey !== p.smsKey) {
        p.smsKey = smsKey;
        smsList.textContent = "";
        state.sms.forEach(function (s) {
          var time = new Date(s.at).toLocaleTimeString();
          smsList.appendChild(el("li", {}, [
            el("span", { className: "muted", text: (s.from || "Tandao") + " · " + time }),
            el("br"),
            document.createTextNode(s.text),
          ]));
        });
        smsEmpty.hidden = state.sms.length > 0;
      }
      if (p.chat) p.chat.refresh();
    };
    select(phone);
    poll();
  }

  function chatPane(p) {
    var log = el("ol", { className: "chat-log", "aria-label": "Chat with the bot" });
    var channel = cfg.chats.telegram ? "telegram" : "whatsapp";
    var choices = el("fieldset", {}, [el("legend", { text: "Chat on" })]);
    ["telegram", "whatsapp"].forEach(function (c) {
      if (!cfg.chats[c]) return;
      var radio = el("input", { type: "radio", name: "chat-" + p.phone, value: c });
      radio.checked = c === channel;
      radio.addEventListener("change", function () { channel = c; seen = 0; mine = []; log.textContent = ""; refresh(); });
      choices.appendChild(el("label", {}, [radio, document.createTextNode(c === "telegram" ? " Telegram" : " WhatsApp")]));
    });
    var input = el("input", { autocomplete: "off" });
    var sendButton = el("button", { type: "submit", text: "Send" });
    var share = el("button", { type: "button", text: "Share my number" });
    var form = el("form", { className: "chat-form" }, [
      el("label", {}, [document.createTextNode("Message "), input]), sendButton, share,
    ]);
    var seen = 0;
    var mine = [];
    var busy = false;
    function add(text, buttons, me) {
      var item = el("li", { className: me ? "me" : "" }, [
        el("span", { className: "muted", text: me ? "You" : "Bot" }), el("br"), document.createTextNode(text),
      ]);
      if (buttons && buttons.length) item.appendChild(el("div", { className: "muted", text: "Buttons: " + buttons.join(" · ") }));
      log.appendChild(item);
    }
    function refresh() {
      if (busy) return;
      busy = true;
      fetch(base + "/api/chat/" + channel + "/" + encodeURIComponent(p.phone))
        .then(function (r) { return r.json(); })
        .then(function (j) {
          (j.messages || []).slice(seen).forEach(function (m) { add(m.text, m.buttons, false); });
          seen = Math.max(seen, (j.messages || []).length);
        })
        .catch(function () {})
        .finally(function () { busy = false; });
    }
    function say(body) {
      post("/api/chat/" + channel, Object.assign({ phone: p.phone }, body)).then(function () { refresh(); });
    }
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var text = input.value.trim();
      if (!text) return;
      mine.push(text);
      add(text, null, true);
      input.value = "";
      say({ text: text });
    });
    share.addEventListener("click", function () {
      add("(shared " + p.phone + ")", null, true);
      say({ shareContact: true });
    });
    p.chat = { refresh: refresh };
    return el("section", { className: "card", "aria-label": "Chat" }, [el("h3", { text: "Chat" }), choices, log, form]);
  }

  function cell(text, className) {
    return el("td", className ? { className: className, text: text } : { text: text });
  }
  function fill(id, rows, columns, keyName) {
    var body = document.querySelector("#" + id + " tbody");
    body.textContent = "";
    if (!rows.length) {
      var none = el("td", { colspan: String(columns.length), className: "muted", text: "None" });
      body.appendChild(el("tr", {}, [none]));
      return;
    }
    rows.forEach(function (row) {
      var tr = el("tr", { "data-name": row[keyName] });
      columns.forEach(function (c) {
        tr.appendChild(cell(row[c], c === "disabled" ? "disabled " + row[c] : ""));
      });
      body.appendChild(tr);
    });
  }

  var polling = false;
  function poll() {
    if (polling) return;
    polling = true;
    fetch(base + "/api/state?phones=" + encodeURIComponent(order.join(",")))
      .then(function (r) { return r.json(); })
      .then(function (state) {
        order.forEach(function (phone) {
          var s = state.phones[phone];
          if (s && phones[phone]) phones[phone].update(s);
        });
        var router = state.router;
        var note = document.getElementById("router-note");
        if (!router) { note.textContent = "No emulated router in this sandbox."; return; }
        note.textContent = "The emulated MikroTik, read every " + (cfg.pollMs / 1000) + " s. Last read " + new Date().toLocaleTimeString() + ".";
        fill("secrets", router.secrets, ["name", "profile", "disabled"], "name");
        fill("ppp-active", router.active, ["name", "address", "uptime"], "name");
        fill("hotspot-users", router.hotspotUsers, ["name", "profile", "limitUptime", "disabled"], "name");
        fill("hotspot-active", router.hotspotActive, ["user", "address", "uptime"], "user");
      })
      .catch(function () {})
      .finally(function () { polling = false; });
  }

  document.querySelectorAll("[data-open]").forEach(function (b) {
    b.addEventListener("click", function () { open(b.getAttribute("data-open")); });
  });
  document.getElementById("open-other").addEventListener("submit", function (e) {
    e.preventDefault();
    var field = document.getElementById("other-phone");
    var phone = normal(field.value);
    document.getElementById("open-error").textContent = phone ? "" : "Type a phone number such as +254722000111.";
    if (phone) { open(phone); field.value = ""; }
  });
  var wanted = new URLSearchParams(location.search).getAll("phone").map(normal).filter(Boolean);
  wanted.forEach(open);
  poll();
  setInterval(poll, cfg.pollMs);
})();
`;
