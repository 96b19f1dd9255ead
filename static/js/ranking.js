// The ranking workbench (templates/rate/_ranking.html): one order, edited by keys, by clicking
// a card's place buttons, by dragging chips, or by typing it, always shown three ways at once
// (the chips, each card's place, the order box). What is posted is the order box: the notation
// of app/services/rating/ranking_judgments.py (parse_order), whose rules parse() repeats.
//
// The order is a list of groups (a group holds tied responses; its index + 1 is their rank) and
// `cut`, the number of groups above the all-bad line (null: no line). The line is an item of
// the visible list too: moving a response across it, or moving the line, changes `cut`.
(function () {
  "use strict";

  let state = null; // {form, letters, groups, cut, selected}

  function form() { return document.getElementById("rank-form"); }

  // ---- the notation ------------------------------------------------------------------------
  // Returns {groups, cut} or {error}; with `partial`, letters may be missing (not placed yet).
  function parse(text, letters, partial) {
    const groups = [];
    let cut = null;
    let tieNext = false;
    const seen = new Set();
    for (const raw of text.trim().toUpperCase()) {
      if (" ,>".includes(raw)) continue;
      if (raw === "=") {
        if (!groups.length || tieNext) return { error: "'=' goes between two letters (C=A ties C and A)" };
        tieNext = true;
      } else if (raw === "|") {
        if (cut !== null) return { error: "draw the all-bad line '|' once" };
        if (tieNext) return { error: "the all-bad line cannot split a tie" };
        cut = groups.length;
      } else if (letters.includes(raw)) {
        if (seen.has(raw)) return { error: raw + " appears twice" };
        seen.add(raw);
        if (tieNext) groups[groups.length - 1].push(raw);
        else groups.push([raw]);
        tieNext = false;
      } else {
        return { error: "'" + raw + "' is not one of the responses " + letters.join(", ") +
                 " (or = for a tie, | for the line)" };
      }
    }
    if (tieNext && !partial) return { error: "'=' goes between two letters (C=A ties C and A)" };
    const missing = letters.filter(function (l) { return !seen.has(l); });
    if (missing.length && !partial) return { error: "put every response in the order; missing: " + missing.join(", ") };
    return { groups: groups, cut: cut };
  }

  function format(groups, cut) {
    const parts = [];
    groups.forEach(function (group, index) {
      if (cut === index) parts.push("|");
      parts.push(group.join("="));
    });
    if (cut !== null && cut >= groups.length) parts.push("|");
    return parts.join(" ");
  }

  // ---- editing -----------------------------------------------------------------------------
  function groupOf(letter) {
    return state.groups.findIndex(function (group) { return group.includes(letter); });
  }

  function placed() { return state.groups.reduce(function (n, g) { return n + g.length; }, 0); }

  // Take a letter out of the order; its group disappears when it held only that letter.
  function remove(letter) {
    const g = groupOf(letter);
    if (g < 0) return -1;
    const group = state.groups[g];
    group.splice(group.indexOf(letter), 1);
    if (!group.length) {
      state.groups.splice(g, 1);
      if (state.cut !== null && g < state.cut) state.cut -= 1;
    }
    return g;
  }

  // Insert a letter alone at group index `index`, on the chosen side of the line.
  function insertAt(letter, index, aboveLine) {
    index = Math.max(0, Math.min(index, state.groups.length));
    state.groups.splice(index, 0, [letter]);
    if (state.cut !== null && (index < state.cut || (index === state.cut && aboveLine))) state.cut += 1;
  }

  function select(letter) {
    state.selected = letter;
    if (letter !== "line" && letter !== null && groupOf(letter) < 0) insertAt(letter, state.groups.length, false);
    const card = letter && letter !== "line" && state.form.closest(".workbench").querySelector(
      '.rank-card[data-letter="' + letter + '"]');
    if (card) {
      card.classList.add("expanded");
      card.scrollIntoView({ block: "nearest", inline: "nearest" });
    }
  }

  function move(step) {
    const sel = state.selected;
    if (sel === null) return;
    if (sel === "line") {
      if (state.cut === null) return;
      state.cut = Math.max(0, Math.min(state.groups.length, state.cut + step));
      return;
    }
    const g = groupOf(sel);
    if (g < 0) return;
    if (state.groups[g].length > 1) { // out of a tie: just above or just below the others
      remove(sel);
      insertAt(sel, step < 0 ? g : g + 1, state.cut !== null && g < state.cut);
      return;
    }
    if (state.cut !== null && state.cut === (step < 0 ? g : g + 1)) { // across the line first
      state.cut -= step;
      return;
    }
    const other = g + step;
    if (other < 0 || other >= state.groups.length) return;
    const swap = state.groups[other];
    state.groups[other] = state.groups[g];
    state.groups[g] = swap;
  }

  function placeAt(letter, place) {
    remove(letter);
    insertAt(letter, place - 1, state.cut !== null && place - 1 < state.cut);
    state.selected = letter;
  }

  function toggleTie(letter) {
    const g = groupOf(letter);
    if (g < 0) return;
    if (state.groups[g].length > 1) { // untie: just below the others
      remove(letter);
      insertAt(letter, g + 1, state.cut !== null && g < state.cut);
      return;
    }
    if (g === 0) { status("Response " + letter + " is first: there is nothing above it to tie with."); return; }
    state.groups.splice(g, 1);
    state.groups[g - 1].push(letter);
    if (state.cut !== null && state.cut > g) state.cut -= 1;
  }

  function toggleLine() {
    const sel = state.selected;
    if (sel === "line") { state.cut = null; state.selected = null; return; }
    const g = sel === null ? -1 : groupOf(sel);
    if (g >= 0) {
      if (state.cut === g + 1) { state.cut = null; return; }
      state.cut = g + 1;
    } else if (state.cut === null) {
      state.cut = state.groups.length;
    }
    state.selected = "line";
  }

  // A chip dropped on another item takes its place, on the same side of the line as that item.
  function drop(dragged, target) {
    if (dragged === target) return;
    if (target === "unplaced") {
      if (dragged !== "line") remove(dragged);
      else state.cut = null;
      state.selected = null;
      return;
    }
    if (dragged === "line") {
      const t = groupOf(target);
      if (t < 0) return;
      if (state.cut === null) state.cut = t + 1;
      else state.cut = state.cut <= t ? t + 1 : t;
      state.selected = "line";
      return;
    }
    const from = groupOf(dragged);
    if (target === "line") {
      remove(dragged);
      if (state.cut === null) state.cut = state.groups.length;
      insertAt(dragged, state.cut, true);
    } else {
      const wasAbove = from >= 0 && from < groupOf(target);
      const aboveLine = state.cut !== null && groupOf(target) < state.cut;
      remove(dragged);
      const t = groupOf(target);
      insertAt(dragged, wasAbove ? t + 1 : t, aboveLine);
    }
    state.selected = dragged;
  }

  // ---- showing -----------------------------------------------------------------------------
  function status(message, isError) {
    const box = state.form.querySelector(".order-status");
    box.textContent = message || "";
    box.classList.toggle("error", Boolean(isError));
  }

  function summary() {
    const left = state.letters.length - placed();
    if (left) return left + " of " + state.letters.length + " not placed yet";
    return "Complete" + (state.cut === null ? " (no all-bad line)" : "") + ": Enter submits.";
  }

  function chip(item, label, rank, tied) {
    const li = document.createElement("li");
    li.className = "chip" + (item === "line" ? " line" : "") + (tied ? " tied" : "") +
      (state.selected === item ? " selected" : "");
    li.draggable = true;
    li.dataset.item = item;
    li.dataset.testid = "chip-" + item;
    if (rank) {
      const badge = document.createElement("span");
      badge.className = "rank";
      badge.textContent = (tied ? "=" : "") + rank;
      li.appendChild(badge);
    }
    li.appendChild(document.createTextNode(label));
    return li;
  }

  function render(keepBox) {
    state.groups.forEach(function (group) { group.sort(); }); // tied letters in one order, as the server writes them
    const list = state.form.querySelector(".order-list");
    const pool = state.form.querySelector(".unplaced");
    list.replaceChildren();
    state.groups.forEach(function (group, g) {
      if (state.cut === g) list.appendChild(chip("line", "all bad below", null, false));
      group.forEach(function (letter, i) { list.appendChild(chip(letter, letter, g + 1, i > 0)); });
    });
    if (state.cut !== null && state.cut >= state.groups.length) list.appendChild(chip("line", "all bad below", null, false));
    pool.replaceChildren();
    state.letters.filter(function (l) { return groupOf(l) < 0; }).forEach(function (letter) {
      const li = chip(letter, letter, null, false);
      li.classList.add("loose");
      pool.appendChild(li);
    });
    const bench = state.form.closest(".workbench");
    state.letters.forEach(function (letter) {
      const g = groupOf(letter);
      const card = bench.querySelector('.rank-card[data-letter="' + letter + '"]');
      const label = bench.querySelector('[data-rank-of="' + letter + '"]');
      let text = "not placed";
      if (g >= 0) {
        text = "rank " + (g + 1) + (state.groups[g].length > 1 ? " (tie)" : "");
        if (state.cut !== null && g >= state.cut) text += ", unacceptable";
      }
      label.textContent = text;
      card.classList.toggle("selected", state.selected === letter);
      card.classList.toggle("below-line", g >= 0 && state.cut !== null && g >= state.cut);
      card.querySelectorAll("[data-place]").forEach(function (button) {
        button.setAttribute("aria-pressed", String(g >= 0 && Number(button.dataset.place) === g + 1));
      });
    });
    if (!keepBox) state.form.querySelector("input[name=order]").value = format(state.groups, state.cut);
    status(summary(), false);
  }

  // ---- wiring ------------------------------------------------------------------------------
  function init() {
    const f = form();
    if (!f) { state = null; return; }
    if (state && state.form === f) return;
    const bench = f.closest(".workbench");
    const letters = Array.from(bench.querySelectorAll(".rank-card")).map(function (c) { return c.dataset.letter; });
    state = { form: f, letters: letters, groups: [], cut: null, selected: null };
    const box = f.querySelector("input[name=order]");
    const parsed = parse(box.value, letters, true);
    if (!parsed.error) { state.groups = parsed.groups; state.cut = parsed.cut; }
    f.querySelector(".order-panel").hidden = false;
    bench.querySelectorAll("[data-place], [data-expand]").forEach(function (b) { b.hidden = false; });
    render(Boolean(parsed.error));
    if (parsed.error) status(parsed.error, true);
  }

  document.addEventListener("DOMContentLoaded", init);
  document.addEventListener("htmx:afterSettle", init);

  function update(keepBox) { render(keepBox); }

  document.addEventListener("input", function (event) {
    if (!state || event.target !== state.form.querySelector("input[name=order]")) return;
    const parsed = parse(event.target.value, state.letters, true);
    if (parsed.error) { status(parsed.error, true); return; }
    state.groups = parsed.groups;
    state.cut = parsed.cut;
    state.selected = null;
    update(true);
  });
  document.addEventListener("focusout", function (event) {
    if (state && event.target === state.form.querySelector("input[name=order]")) {
      const parsed = parse(event.target.value, state.letters, true);
      if (!parsed.error) update(false);
    }
  });

  // An incomplete or malformed order is not sent: the status line says what is missing.
  document.addEventListener("htmx:confirm", function (event) {
    if (!state || event.detail.elt !== state.form) return;
    const parsed = parse(state.form.querySelector("input[name=order]").value, state.letters, false);
    if (parsed.error) {
      event.preventDefault();
      status(parsed.error, true);
    }
  });

  document.addEventListener("click", function (event) {
    if (!state) return;
    const place = event.target.closest("[data-place]");
    if (place) { placeAt(place.dataset.letter, Number(place.dataset.place)); update(false); return; }
    const expand = event.target.closest("[data-expand]");
    if (expand) {
      const card = expand.closest(".rank-card");
      const open = !card.classList.contains("expanded");
      card.classList.toggle("expanded", open);
      expand.setAttribute("aria-expanded", String(open));
      expand.textContent = open ? "Show less" : "Show all";
      return;
    }
    const item = event.target.closest(".chip");
    if (item && state.form.contains(item)) {
      const id = item.dataset.item;
      if (id === "line") state.selected = "line";
      else select(id);
      update(false);
    }
  });

  let dragged = null;
  document.addEventListener("dragstart", function (event) {
    const item = state && event.target.closest && event.target.closest(".chip");
    if (!item) return;
    dragged = item.dataset.item;
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", dragged);
  });
  function dropTarget(event) {
    if (!state || dragged === null) return null;
    const item = event.target.closest && event.target.closest(".chip");
    if (item && state.form.contains(item)) return item.classList.contains("loose") ? "unplaced" : item.dataset.item;
    if (event.target.closest && event.target.closest(".unplaced")) return "unplaced";
    return null;
  }
  document.addEventListener("dragover", function (event) {
    if (dropTarget(event) !== null) event.preventDefault();
  });
  document.addEventListener("drop", function (event) {
    const target = dropTarget(event);
    if (target === null) return;
    event.preventDefault();
    drop(dragged, target);
    dragged = null;
    update(false);
  });
  document.addEventListener("dragend", function () { dragged = null; });

  // Keys; rate.js handles s (skip), u (undo) and ? (help) for every kind of task.
  document.addEventListener("keydown", function (event) {
    if (!state || !document.body.contains(state.form) || event.altKey || event.metaKey) return;
    const target = event.target;
    const box = state.form.querySelector("input[name=order]");
    if (target === box) {
      if (event.key === "Escape") update(false);
      return; // Enter in the box submits the form
    }
    if (target && (target.tagName === "TEXTAREA" || target.tagName === "INPUT" || target.tagName === "SELECT")) return;
    if (event.ctrlKey) return;
    const key = event.key;
    const upper = key.length === 1 ? key.toUpperCase() : "";
    let handled = true;
    if (upper && state.letters.includes(upper)) select(upper);
    else if (key === "ArrowUp" || key === "k") move(-1);
    else if (key === "ArrowDown" || key === "j") move(1);
    else if (/^[1-9]$/.test(key) && state.selected && state.selected !== "line") {
      if (Number(key) <= state.letters.length) placeAt(state.selected, Number(key));
    } else if (key === "=") { if (state.selected && state.selected !== "line") toggleTie(state.selected); }
    else if (key === "x" || key === "X" || key === "|") toggleLine();
    else if (key === "Escape") state.selected = null;
    else if (key === "/") { box.focus(); box.select(); event.preventDefault(); return; }
    else if (key === "Enter") {
      event.preventDefault();
      if (typeof state.form.requestSubmit === "function") state.form.requestSubmit();
      else state.form.submit();
      return;
    } else handled = false;
    if (!handled) return;
    event.preventDefault();
    update(false);
  });
})();
