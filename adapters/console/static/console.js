// The console's script: dialogs, selection counts and live progress. Every
// page works without it; it only saves round trips and shows progress live.
"use strict";
(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  // The "Show" menu applies itself.
  $$("select[data-autosubmit]").forEach((s) => s.addEventListener("change", () => s.form.requestSubmit()));

  // Selection and the bulk action bar.
  const rows = $$("input.row-select");
  const all = $("#select-all");
  const bar = $("#bulkbar");
  const count = $("#selected-count");
  const selected = () => rows.filter((r) => r.checked).length;
  function update() {
    const n = selected();
    if (count) count.textContent = String(n);
    if (bar) bar.hidden = n === 0;
    if (all) {
      all.checked = n > 0 && n === rows.length;
      all.indeterminate = n > 0 && n < rows.length;
    }
  }
  rows.forEach((r) => r.addEventListener("change", update));
  if (all) all.addEventListener("change", () => { rows.forEach((r) => { r.checked = all.checked; }); update(); });
  update();

  // Confirmation: a button with data-confirm asks first, in a dialog that
  // shows the selected count for bulk actions and takes an optional reason.
  const dialog = $("#confirm-dialog");
  let pending = null;
  document.addEventListener("click", (e) => {
    const b = e.target.closest("button[data-confirm]");
    if (!b || !dialog || b.dataset.confirmed === "1") return;
    e.preventDefault();
    let text = b.dataset.confirm;
    if (b.hasAttribute("data-bulk")) {
      const n = selected();
      if (n === 0) return;
      text = text.replace("{n}", String(n));
    }
    $("#confirm-text", dialog).textContent = text;
    const extra = $("#confirm-extra", dialog);
    extra.replaceChildren();
    const tpl = b.dataset.extra && document.getElementById(b.dataset.extra);
    if (tpl) extra.appendChild(tpl.content.cloneNode(true));
    $("#confirm-reason", dialog).value = "";
    $("#confirm-ok", dialog).className = b.classList.contains("danger") ? "danger" : "primary";
    $("#confirm-ok", dialog).textContent = b.textContent.trim() || "Confirm";
    pending = b;
    dialog.showModal();
  });
  if (dialog) {
    $("#confirm-ok", dialog).addEventListener("click", () => {
      const b = pending;
      dialog.close();
      if (!b) return;
      const reason = b.form.querySelector("input[type=hidden][name=reason]");
      if (reason) reason.value = $("#confirm-reason", dialog).value;
      // The count the user saw and confirmed: the server refuses the
      // request, changing nothing, when it is not the number of ids sent.
      const ec = b.hasAttribute("data-bulk") && $("#expected-count");
      if (ec) ec.value = String(selected());
      b.dataset.confirmed = "1";
      b.form.requestSubmit(b);
      delete b.dataset.confirmed;
      pending = null;
    });
  }

  // Dialogs opened by links (the "Delete forever" dialog), closed by their Cancel.
  document.addEventListener("click", (e) => {
    const a = e.target.closest("[data-dialog]");
    if (a) {
      const d = document.getElementById(a.dataset.dialog);
      if (d) { e.preventDefault(); d.showModal(); }
      return;
    }
    const c = e.target.closest("dialog [data-close]");
    if (c) { e.preventDefault(); c.closest("dialog").close(); }
  });
  $$("dialog[data-open]").forEach((d) => { d.close(); d.showModal(); });

  // Progress bars follow their job until it ends.
  $$("[data-poll]").forEach((box) => {
    const bar = $("progress", box);
    const text = $("[data-progress-text]", box);
    const state = $("[data-progress-state]", box);
    async function poll() {
      try {
        const r = await fetch(box.dataset.poll, { headers: { Accept: "application/json" }, cache: "no-store" });
        if (!r.ok) throw new Error(String(r.status));
        const p = await r.json();
        bar.max = Math.max(p.total, 1);
        bar.value = p.done;
        text.textContent = p.text;
        state.textContent = p.state;
        state.dataset.state = p.state;
        state.className = "state-" + p.state;
        if (p.terminal) {
          $$("[data-hide-when-done]").forEach((el) => { el.hidden = true; });
          box.dataset.done = "1";
          return;
        }
      } catch (err) {
        text.textContent = "Progress is not reachable right now; retrying.";
      }
      setTimeout(poll, 500);
    }
    if (state.dataset.state === "succeeded" || state.dataset.state === "failed" || state.dataset.state === "cancelled" || state.dataset.state === "done") {
      box.dataset.done = "1";
      $$("[data-hide-when-done]").forEach((el) => { el.hidden = true; });
    } else {
      poll();
    }
  });
})();
