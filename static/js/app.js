// Small behaviours shared by every page. No inline scripts: the CSP forbids them.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    const toggle = event.target.closest("[data-toggle]");
    if (toggle) {
      const target = document.getElementById(toggle.dataset.toggle);
      if (target) {
        target.hidden = !target.hidden;
        toggle.setAttribute("aria-expanded", String(!target.hidden));
      }
    }
    const copy = event.target.closest("[data-copy]");
    if (copy && navigator.clipboard) {
      navigator.clipboard.writeText(copy.dataset.copy);
      copy.textContent = "Copied";
    }
  });
  // A <details data-remember="KEY"> keeps its open state in localStorage under KEY (the page
  // renders it closed): the workbench's instructions, remembered per project.
  document.querySelectorAll("details[data-remember]").forEach(function (details) {
    const key = details.dataset.remember;
    try {
      if (window.localStorage.getItem(key) === "1") details.open = true;
    } catch (error) { /* storage disabled: the default stands */ }
    details.addEventListener("toggle", function () {
      try { window.localStorage.setItem(key, details.open ? "1" : "0"); } catch (error) { /* ignored */ }
    });
  });
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  }, true);
})();
