// The writing editor (templates/rate/_writing.html): word and character counts with the
// project's length guidance, the live preview, and drafts that are never lost.
//
// * Every change is kept at once in this browser (localStorage, per user and task) and, after a
//   short pause, on the server (POST /rate/<slug>/drafts), which answers with the preview
//   rendered by the site's Markdown sanitiser. A draft the server acknowledged is marked so.
// * On load, a local draft the server never got (a dropped connection, an expired session, a
//   tab closed before the save) goes back into the editor and is sent again.
// * Closing or leaving the page sends an unsaved draft as a beacon.
// * A submit the server accepted (200) removes the local copy; any other answer keeps it.
(function () {
  "use strict";

  const SAVE_DELAY_MS = 400;
  let timer = null;
  let pending = null; // {form, text} not yet acknowledged by the server
  let shownAt = Date.now();
  let restored = false; // the editor holds a draft this browser kept that the server had not got

  function editorForm() { return document.getElementById("write-form"); }

  function storageKey(form) { return "rlhf:draft:" + form.dataset.user + ":" + form.dataset.task; }

  function readLocal(form) {
    try {
      const raw = window.localStorage.getItem(storageKey(form));
      return raw ? JSON.parse(raw) : null;
    } catch (error) { return null; }
  }

  function writeLocal(form, text, acked) {
    try {
      window.localStorage.setItem(storageKey(form), JSON.stringify({ text: text, acked: acked, at: Date.now() }));
    } catch (error) { /* storage full or disabled: the server copy remains */ }
  }

  function dropLocal(form) {
    try { window.localStorage.removeItem(storageKey(form)); } catch (error) { /* ignored */ }
  }

  function csrfToken() {
    try { return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRF-Token"] || ""; }
    catch (error) { return ""; }
  }

  function setStatus(form, text, kind, link) {
    const box = form.querySelector("[data-testid=draft-status]");
    if (!box) return;
    box.textContent = text;
    box.className = "draft-status" + (kind ? " " + kind : "");
    if (link) {
      const anchor = document.createElement("a");
      anchor.href = link.href;
      anchor.textContent = link.text;
      box.appendChild(document.createTextNode(" "));
      box.appendChild(anchor);
    }
  }

  function count(form) {
    const box = form.querySelector("textarea[name=text]");
    const text = box.value;
    const words = text.trim() ? text.trim().split(/\s+/).length : 0;
    const chars = Array.from(text).length;
    const minWords = parseInt(form.dataset.minWords || "", 10);
    const maxWords = parseInt(form.dataset.maxWords || "", 10);
    const maxChars = parseInt(form.dataset.maxChars || "", 10);
    form.querySelector("[data-count=words]").textContent = String(words);
    form.querySelector("[data-count=chars]").textContent = chars.toLocaleString("en");
    let guidance = "";
    let over = false;
    if (maxChars && chars > maxChars) {
      guidance = "— " + (chars - maxChars).toLocaleString("en") + " characters over the limit";
      over = true;
    } else if (minWords && words < minWords) {
      guidance = "— " + (minWords - words) + " words short of the guidance";
    } else if (maxWords && words > maxWords) {
      guidance = "— " + (words - maxWords) + " words over the guidance";
    }
    const hint = form.querySelector("[data-count=guidance]");
    hint.textContent = guidance;
    hint.classList.toggle("over", over);
    form.querySelector("input[name=time_spent_ms]").value = String(Date.now() - shownAt);
  }

  function draftBody(form, text) {
    const body = new FormData();
    body.append("csrf_token", csrfToken());
    body.append("assignment_id", form.querySelector("input[name=assignment_id]").value);
    body.append("text", text);
    return body;
  }

  function loginLink(form) {
    return { href: "/login?next=" + encodeURIComponent("/rate/" + form.dataset.slug), text: "Log in again" };
  }

  // The text of an error answer: plain text, or an HTML page's text.
  async function message(response) {
    const body = await response.text();
    if ((response.headers.get("content-type") || "").indexOf("html") < 0) return body.trim();
    const page = new DOMParser().parseFromString(body, "text/html");
    const main = page.querySelector("main p, p") || page.body;
    return (main.textContent || "").trim();
  }

  async function save(form, text) {
    let response;
    try {
      response = await fetch("/rate/" + form.dataset.slug + "/drafts", {
        method: "POST", body: draftBody(form, text), credentials: "same-origin",
        headers: { "X-CSRF-Token": csrfToken() },
      });
    } catch (error) {
      setStatus(form, "Offline: your draft is kept in this browser and will be saved when you are back.", "warning");
      return;
    }
    if (!document.body.contains(form)) return; // the task changed meanwhile
    // An expired session answers 401 (or the login page); the next request, whose session
    // cookie no longer holds the form token, 403.
    const expired = response.status === 401 || response.status === 403 ||
      (response.redirected && new URL(response.url).pathname === "/login");
    if (expired) {
      setStatus(form, "Your session has expired. Your draft is kept in this browser;", "warning", loginLink(form));
      return;
    }
    if (!response.ok) {
      setStatus(form, await message(response) || "Draft not saved (" + response.status + ").", "error");
      return;
    }
    const preview = await response.text();
    const box = form.querySelector("textarea[name=text]");
    if (box.value !== text) return; // typed on: the next save answers
    document.getElementById("preview").innerHTML = preview; // sanitised by the server
    writeLocal(form, text, true);
    if (pending && pending.text === text) pending = null;
    setStatus(form, restored ? "Restored your unsaved draft from this browser; saved." : "Draft saved.", "");
  }

  function changed(form) {
    restored = false;
    const text = form.querySelector("textarea[name=text]").value;
    count(form);
    writeLocal(form, text, false);
    pending = { form: form, text: text };
    window.clearTimeout(timer);
    timer = window.setTimeout(function () { save(form, text); }, SAVE_DELAY_MS);
  }

  function setUp() {
    const form = editorForm();
    if (!form || form.dataset.ready) return;
    form.dataset.ready = "1";
    shownAt = Date.now();
    pending = null;
    restored = false;
    const box = form.querySelector("textarea[name=text]");
    const local = readLocal(form);
    if (local && typeof local.text === "string") {
      if (!local.acked) {
        // Text the server never got (also the text of a submit it refused): back to the editor
        // when the page shows something else, and sent again.
        if (local.text !== box.value) {
          box.value = local.text;
          restored = true;
          setStatus(form, "Restored your unsaved draft from this browser.", "notice");
        }
        pending = { form: form, text: local.text };
        save(form, local.text);
      } else if (local.text !== box.value) {
        dropLocal(form); // the server's copy is newer (an undo, another device)
      }
    }
    count(form);
    box.addEventListener("input", function () { changed(form); });
    // The editor gets the focus (unless the rater is elsewhere already), the caret at the end.
    const active = document.activeElement;
    if (!active || active === document.body || active === box) {
      box.focus();
      box.setSelectionRange(box.value.length, box.value.length);
    }
  }

  // A submit: the time spent goes with it; the local copy goes once the server stored it.
  document.addEventListener("htmx:configRequest", function (event) {
    const form = editorForm();
    if (form && event.detail.elt === form) {
      window.clearTimeout(timer);
      count(form);
      event.detail.parameters.time_spent_ms = String(Date.now() - shownAt);
    }
  });
  // An answer that is not a workbench (the input guard's page for a NUL, a stale form, a
  // failed server) is not swapped in: the editor and its text stay, the message is shown.
  document.addEventListener("htmx:beforeSwap", function (event) {
    const form = editorForm();
    const xhr = event.detail.xhr;
    if (!form || event.detail.requestConfig.elt !== form || !xhr) return;
    if (xhr.responseText.indexOf('id="workbench"') >= 0) return;
    event.detail.shouldSwap = false;
    event.detail.isError = false;
    const page = new DOMParser().parseFromString(xhr.responseText, "text/html");
    const found = page.querySelector("main p, p");
    const why = found ? found.textContent.trim() : "the server answered " + xhr.status;
    const stale = xhr.status === 401 || xhr.status === 403;
    setStatus(form, "Not submitted: " + why + " Your text is still in the editor" + (stale ? ";" : "."),
      "error", stale ? loginLink(form) : null);
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    const elt = event.detail.elt;
    if (elt && elt.id === "write-form" && event.detail.xhr && event.detail.xhr.status === 200) {
      dropLocal(elt);
      pending = null;
    }
  });
  document.addEventListener("htmx:afterSettle", setUp);
  document.addEventListener("DOMContentLoaded", setUp);
  if (document.readyState !== "loading") setUp();

  // Leaving the page: an unsaved draft goes to the server as a beacon (it is in localStorage too).
  window.addEventListener("pagehide", function () {
    if (!pending || !document.body.contains(pending.form) || !navigator.sendBeacon) return;
    navigator.sendBeacon("/rate/" + pending.form.dataset.slug + "/drafts", draftBody(pending.form, pending.text));
  });
})();
