// Keyboard shortcuts of the rating workbench. The workbench is replaced by htmx after every
// action, so the handler looks the elements up on each key press instead of binding them once.
(function () {
  "use strict";

  let inFlight = false;
  let pendingUndo = false;

  function workbench() { return document.getElementById("workbench"); }

  document.addEventListener("htmx:beforeRequest", function () { inFlight = true; });
  document.addEventListener("htmx:afterRequest", function () { inFlight = false; });
  document.addEventListener("htmx:afterSettle", function () {
    if (pendingUndo) {
      pendingUndo = false;
      submitForm("undo-form");
    }
  });

  function submitForm(id) {
    const form = document.getElementById(id);
    if (!form) return;
    if (typeof form.requestSubmit === "function") form.requestSubmit();
    else form.submit();
  }

  function toggleHelp() {
    const help = document.getElementById("help");
    if (help) help.hidden = !help.hidden;
  }

  document.addEventListener("keydown", function (event) {
    const bench = workbench();
    if (!bench || event.altKey || event.metaKey) return;
    const target = event.target;
    const typing = target && (target.tagName === "TEXTAREA" ||
      (target.tagName === "INPUT" && target.type === "text"));

    if (typing) {
      if (event.key === "Escape") { target.blur(); event.preventDefault(); }
      else if (event.key === "Enter" && event.ctrlKey && target.form) {
        submitForm(target.form.id);
        event.preventDefault();
      }
      return;
    }
    const key = event.key;
    if (event.ctrlKey) {
      // Ctrl+Enter submits whichever answer the workbench holds (the writing editor included).
      const form = bench.querySelector("#judge-form, #review-form, #write-form");
      if (key === "Enter" && form) { submitForm(form.id); event.preventDefault(); }
      return;
    }

    if (key === "Enter") {
      // Enter alone submits a choice (a pair, a review); a written answer needs Ctrl+Enter.
      const form = bench.querySelector("#judge-form, #review-form");
      if (form) {
        event.preventDefault();
        submitForm(form.id);
      }
      return;
    }
    if (key === "?") { toggleHelp(); event.preventDefault(); return; }
    // "/" opens the rationale or the review's note; "e" goes back to the writing editor.
    const box = key === "/" ? bench.querySelector("textarea[name=rationale], textarea[name=note]")
      : key === "e" ? bench.querySelector("textarea[name=text]") : null;
    if (box) {
      box.focus();
      box.setSelectionRange(box.value.length, box.value.length);
      event.preventDefault();
      return;
    }
    if (key === "/") return;
    if (key === "s") { if (document.getElementById("skip-form")) { submitForm("skip-form"); event.preventDefault(); } return; }
    if (key === "u") {
      event.preventDefault();
      // An undo pressed while a submit is in flight applies to that submit: wait for it.
      if (inFlight) pendingUndo = true;
      else submitForm("undo-form");
      return;
    }

    const input = bench.querySelector('input[data-key="' + CSS.escape(key.toLowerCase()) + '"]');
    if (!input) return;
    event.preventDefault();
    if (input.type === "radio") input.checked = true;
    else input.checked = !input.checked;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  });

  // A request that failed (the server or the network is down) swaps nothing: say so on the
  // workbench, so the rater knows the answer was not saved and can send it again with Enter.
  function showFailure(message) {
    const bench = workbench();
    if (!bench) return;
    let box = document.getElementById("request-failed");
    if (!box) {
      box = document.createElement("p");
      box.id = "request-failed";
      box.className = "error";
      box.setAttribute("role", "alert");
      bench.insertBefore(box, bench.firstChild);
    }
    box.textContent = message;
  }
  document.addEventListener("htmx:responseError", function (event) {
    const status = event.detail.xhr ? event.detail.xhr.status : 0;
    showFailure("Not saved: the server answered " + status + ". Your choice is still selected; " +
      "press Enter to send it again.");
  });
  document.addEventListener("htmx:sendError", function () {
    showFailure("Not saved: the server could not be reached. Your choice is still selected; " +
      "press Enter to send it again.");
  });

  // Bring the new pair into view after each swap, and move focus off the removed form.
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "workbench") {
      const bench = workbench();
      if (bench) bench.scrollIntoView({ block: "start" });
      if (document.activeElement && !document.body.contains(document.activeElement)) {
        document.body.focus();
      }
    }
  });
})();
