// Reframe Studio: a small hand-written script, no build step.
//
// The studio is a client of the public JSON API (the same presign -> PUT -> estimate -> jobs ->
// poll flow as curl), authenticated by the session cookie. Every unsafe call carries the CSRF
// token from <meta name="csrf-token">, which the server derives from the session.
"use strict";

(() => {
  const POLL_MS = 3000; // the API reference asks clients to poll every 3-5 s
  const FPS_OPTIONS = [60, 120, 240];
  const TERMINAL = new Set(["done", "failed", "cancelled"]);
  const STATUS_TEXT = {
    pending: "Created",
    queued: "Queued",
    no_workers: "Waiting for a free renderer",
    cold_start: "Starting the renderer",
    processing: "Rendering",
    done: "Done",
    failed: "Failed",
    cancelled: "Cancelled",
  };

  const $ = (selector, root = document) => root.querySelector(selector);

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrfToken();
    const response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try {
      data = await response.json();
    } catch (_ignored) {
      data = null; // an empty or non-JSON body; the status code still tells what happened
    }
    if (response.status === 401) {
      // The session ended (logged out elsewhere, expired): back to the login page.
      window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
      throw new ApiError(401, "Your session ended. Please log in again.");
    }
    if (!response.ok) {
      const detail = data && typeof data.detail === "string" ? data.detail : `Request failed (HTTP ${response.status}).`;
      throw new ApiError(response.status, detail);
    }
    return data;
  }

  // -- formatting ----------------------------------------------------------------------------

  function fmtBytes(n) {
    if (n == null) return "–";
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  }
  function fmtXeconds(n) {
    return `${n} ${n === 1 ? "xecond" : "xeconds"}`;
  }
  function fmtSeconds(s) {
    if (s == null || !isFinite(s)) return "–";
    return `${Number(s).toFixed(2)} s`;
  }
  function fmtFps(f) {
    if (f == null) return "–";
    return `${Number(f).toFixed(3).replace(/\.?0+$/, "")} fps`;
  }
  function fmtEta(s) {
    if (s == null || !isFinite(s)) return "estimating…";
    s = Math.max(0, Math.round(s));
    if (s < 60) return `about ${s} s left`;
    const m = Math.floor(s / 60);
    return `about ${m} min ${s % 60} s left`;
  }
  function fmtDate(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString();
  }
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const child of children) {
      if (child == null) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  function setText(id, text) {
    const node = document.getElementById(id);
    if (node) node.textContent = text;
  }
  function showPageError(message) {
    const box = document.getElementById("page-error");
    if (!box) return;
    box.textContent = message;
    box.classList.toggle("hidden", !message);
  }
  function statusBadge(status) {
    return el("span", { class: `badge ${status}`, "data-status": status, text: STATUS_TEXT[status] || status });
  }

  // -- copy buttons --------------------------------------------------------------------------

  function initCopyButtons(root = document) {
    for (const button of root.querySelectorAll("[data-copy-target]")) {
      button.addEventListener("click", async () => {
        const input = document.getElementById(button.dataset.copyTarget);
        const status = button.closest("section")?.querySelector('[role="status"]');
        let ok = false;
        try {
          await navigator.clipboard.writeText(input.value);
          ok = true;
        } catch (_ignored) {
          // Clipboard API refused (insecure context, permissions): fall back to selection.
          input.select();
          ok = document.execCommand && document.execCommand("copy");
        }
        if (status) status.textContent = ok ? "Copied to the clipboard." : "Select the text and copy it.";
      });
    }
  }

  // -- before/after player -------------------------------------------------------------------

  function initCompare(root) {
    const before = $("video.before", root);
    const after = $("video.after", root);
    const play = $("[data-play]", root);
    const seek = $("[data-seek]", root);
    const time = $("[data-time]", root);
    const split = $("[data-split]", root);
    const stage = $("[data-stage]", root);
    const splitRow = $("[data-split-row]", root);
    let seeking = false;

    // The output has more frames but the same duration: one clock (the "after" video) drives
    // both, and the other is nudged back whenever it drifts by more than a frame or two.
    const sync = () => {
      if (Math.abs(before.currentTime - after.currentTime) > 0.08) before.currentTime = after.currentTime;
    };
    after.addEventListener("timeupdate", () => {
      sync();
      if (!seeking && after.duration) seek.value = String(Math.round((after.currentTime / after.duration) * 1000));
      time.textContent = `${after.currentTime.toFixed(2)} s`;
    });
    after.addEventListener("ended", () => {
      before.pause();
      play.textContent = "Play";
    });
    play.addEventListener("click", async () => {
      if (after.paused) {
        sync();
        try {
          await Promise.all([after.play(), before.play()]);
          play.textContent = "Pause";
        } catch (_ignored) {
          play.textContent = "Play";
        }
      } else {
        after.pause();
        before.pause();
        play.textContent = "Play";
      }
    });
    seek.addEventListener("input", () => {
      seeking = true;
      if (after.duration) {
        const t = (Number(seek.value) / 1000) * after.duration;
        after.currentTime = t;
        before.currentTime = t;
        time.textContent = `${t.toFixed(2)} s`;
      }
    });
    seek.addEventListener("change", () => {
      seeking = false;
    });
    split.addEventListener("input", () => stage.style.setProperty("--split", `${split.value}%`));
    for (const button of root.querySelectorAll("[data-view]")) {
      button.addEventListener("click", () => {
        const slider = button.dataset.view === "slider";
        for (const other of root.querySelectorAll("[data-view]")) {
          other.setAttribute("aria-pressed", String(other === button));
        }
        stage.classList.toggle("compare-slider", slider);
        stage.classList.toggle("compare-side", !slider);
        splitRow.classList.toggle("hidden", !slider);
        for (const caption of stage.querySelectorAll("figcaption")) caption.classList.toggle("hidden", slider);
        if (slider && !$(".divider", stage)) {
          stage.append(el("span", { class: "divider", "aria-hidden": "true" }));
          stage.append(el("span", { class: "tag before", text: "Before", "aria-hidden": "true" }));
          stage.append(el("span", { class: "tag after", text: "After", "aria-hidden": "true" }));
        }
        for (const extra of stage.querySelectorAll(".divider, .tag")) extra.classList.toggle("hidden", !slider);
        stage.style.setProperty("--split", `${split.value}%`);
      });
    }
  }

  function buildCompare(id, beforeUrl, afterUrl, beforeFps, afterFps) {
    const template = document.getElementById("compare-template");
    const root = template.content.firstElementChild.cloneNode(true);
    $("video.before", root).src = beforeUrl;
    $("video.after", root).src = afterUrl;
    const captions = root.querySelectorAll("figcaption");
    if (beforeFps) captions[0].textContent = `Before · ${fmtFps(beforeFps)}`;
    if (afterFps) captions[1].textContent = `After · ${fmtFps(afterFps)}`;
    for (const [name, input] of [["seek", $("[data-seek]", root)], ["split", $("[data-split]", root)]]) {
      const label = root.querySelector(`label[for="${input.id}"]`);
      input.id = `${id}-${name}`;
      if (label) label.htmlFor = input.id;
    }
    initCompare(root);
    return root;
  }

  // -- dashboard -----------------------------------------------------------------------------

  const dashboard = {
    limits: null,
    bandLabels: new Map(), // band name -> readable label, from GET /pricing/config
    upload: null, // {key, project_id} of the clip being priced
    hasKey: false,
    previews: null, // the preview terms of GET /pricing/config
  };

  function showBalance(balance) {
    if (!balance) return;
    setText("balance-free", String(balance.free_xeconds));
    setText("balance-paid", String(balance.paid_xeconds));
    setText("balance-total", String(balance.total_xeconds));
  }

  async function loadMe() {
    const me = await api("GET", "/me");
    showBalance(me.balance);
    const key = me.api_key;
    dashboard.hasKey = Boolean(key);
    const state = document.getElementById("key-state");
    state.replaceChildren();
    if (key) {
      state.append(
        "Active key ",
        el("code", { text: `${key.prefix}…` }),
        `, created ${fmtDate(key.created_at)}, last used ${key.last_used_at ? fmtDate(key.last_used_at) : "never"}.`,
      );
    } else {
      state.textContent = "Not generated yet. API tokens use the same balance as studio renders.";
    }
    document.getElementById("key-button").textContent = key ? "Replace API key" : "Generate API key";
    return me;
  }

  async function loadPricing() {
    const config = await api("GET", "/pricing/config");
    const body = document.getElementById("pricing-bands");
    body.replaceChildren();
    for (const band of config.bands || []) {
      if (band.label) dashboard.bandLabels.set(band.name, band.label);
      body.append(
        el(
          "tr",
          {},
          el("th", { scope: "row", text: band.label || band.name }),
          el("td", { text: `${band.min_fps}–${band.max_fps} fps` }),
          el("td", { text: `ceil(duration in s) × ${band.multiplier} xeconds` }),
        ),
      );
    }
    const limits = config.limits || {};
    dashboard.limits = limits;
    const list = document.getElementById("pricing-limits");
    list.replaceChildren();
    const items = [];
    if (limits.max_upload_bytes) items.push(`Uploads up to ${fmtBytes(limits.max_upload_bytes)}.`);
    if (limits.max_duration_sec) items.push(`Clips up to ${limits.max_duration_sec} seconds.`);
    if (limits.min_target_fps && limits.max_target_fps) {
      items.push(`Output ${limits.min_target_fps}–${limits.max_target_fps} fps, and above the clip's own frame rate.`);
    }
    items.push("Free xeconds render with a watermark; paid xeconds render clean. A failed render is refunded automatically.");
    dashboard.previews = config.previews || null;
    if (dashboard.previews) items.push(dashboard.previews.description);
    for (const text of items) list.append(el("li", { text }));
    if (limits.max_upload_bytes) setText("limit-size", fmtBytes(limits.max_upload_bytes));
    if (limits.max_duration_sec) setText("limit-duration", `${limits.max_duration_sec} seconds`);
  }

  function initKeyButton() {
    const button = document.getElementById("key-button");
    let armed = false;
    button.addEventListener("click", async () => {
      // Replacing a live key breaks whatever uses it: ask once more, in the page, not a dialog.
      if (dashboard.hasKey && !armed) {
        armed = true;
        button.textContent = "Yes, replace it: the old key stops working";
        button.classList.add("danger");
        return;
      }
      armed = false;
      button.disabled = true;
      try {
        const issued = await api("POST", "/me/api-key");
        const input = document.getElementById("new-key");
        input.value = issued.api_key;
        document.getElementById("key-reveal").classList.remove("hidden");
        setText("key-copy-status", "");
        input.focus();
        input.select();
        await loadMe();
      } catch (error) {
        showPageError(error.message);
      } finally {
        button.disabled = false;
        button.classList.remove("danger");
      }
    });
  }

  function putWithProgress(url, method, headers, file, onProgress) {
    // XMLHttpRequest rather than fetch: only XHR reports upload progress.
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open(method || "PUT", url);
      for (const [name, value] of Object.entries(headers || {})) xhr.setRequestHeader(name, value);
      xhr.upload.onprogress = (event) => {
        if (event.lengthComputable) onProgress(event.loaded / event.total);
      };
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) {
          onProgress(1);
          resolve();
        } else {
          let detail = `Upload failed (HTTP ${xhr.status}).`;
          try {
            detail = JSON.parse(xhr.responseText).detail || detail;
          } catch (_ignored) {
            // S3-compatible stores answer in XML; the status code is the useful part.
          }
          reject(new ApiError(xhr.status, detail));
        }
      };
      xhr.onerror = () => reject(new ApiError(0, "The upload was interrupted. Check the connection and try again."));
      xhr.send(file);
    });
  }

  function setUploadProgress(fraction) {
    const pct = Math.round(fraction * 100);
    const bar = document.getElementById("upload-progress");
    bar.value = pct;
    bar.setAttribute("aria-valuenow", String(pct));
    setText("upload-percent", `${pct}%`);
  }

  function initUpload() {
    const form = document.getElementById("upload-form");
    const fileInput = document.getElementById("clip");
    const button = document.getElementById("upload-button");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const file = fileInput.files && fileInput.files[0];
      const status = document.getElementById("upload-status");
      document.getElementById("estimate").classList.add("hidden");
      if (!file) {
        status.textContent = "Choose a video file first.";
        fileInput.focus();
        return;
      }
      const maxBytes = dashboard.limits && dashboard.limits.max_upload_bytes;
      if (maxBytes && file.size > maxBytes) {
        status.textContent = `This file is ${fmtBytes(file.size)}; the limit is ${fmtBytes(maxBytes)}.`;
        return;
      }
      button.disabled = true;
      document.getElementById("upload-progress-wrap").classList.remove("hidden");
      setUploadProgress(0);
      setText("upload-label", `Uploading ${file.name}…`);
      status.textContent = "";
      try {
        const contentType = file.type || "video/mp4";
        const presigned = await api("POST", "/upload/presign", {
          filename: file.name,
          content_type: contentType,
          size_bytes: file.size,
        });
        const headers = { "Content-Type": contentType, ...(presigned.headers || {}) };
        await putWithProgress(presigned.upload_url, presigned.method, headers, file, setUploadProgress);
        setText("upload-label", `Uploaded ${file.name}`);
        status.textContent = "Uploaded. Reading the clip and pricing it…";
        dashboard.upload = { key: presigned.key, project_id: presigned.project_id };
        const estimate = await api("POST", "/pricing/estimate-video", {
          r2_key: presigned.key,
          target_fps_options: FPS_OPTIONS,
        });
        showEstimate(estimate);
        showBalance(estimate.balance);
        status.textContent = "Ready to render.";
        quotePreview(presigned.key).catch(() => {});
        loadProjects().catch(() => {});
      } catch (error) {
        status.textContent = error.message;
      } finally {
        button.disabled = false;
      }
    });
  }

  // Estimates name the band by its stable API name; people read the label the pricing table
  // shows (the config is loaded with the page, before any clip can be priced).
  function bandLabel(name) {
    return dashboard.bandLabels.get(name) || name;
  }

  function showEstimate(estimate) {
    const probe = estimate.video;
    setText("probe-duration", fmtSeconds(probe.duration_sec));
    // A variable-rate clip (phones, screen recorders) is priced and rendered at its mean rate.
    setText("probe-fps", probe.variable_frame_rate ? `${fmtFps(probe.fps)} (variable; average)` : fmtFps(probe.fps));
    setText("probe-resolution", probe.width && probe.height ? `${probe.width} × ${probe.height}` : "–");
    setText("probe-codec", probe.codec || "–");
    setText("probe-audio", probe.has_audio ? "yes (kept in the render)" : "none");
    const fieldset = document.getElementById("fps-options");
    for (const old of fieldset.querySelectorAll(".option")) old.remove();
    let firstAllowed = null;
    for (const option of estimate.options || []) {
      const fps = option.target_fps;
      const id = `fps-${fps}`;
      const affordable = option.covered_by_balance !== false;
      const allowed = option.allowed && affordable;
      let why = null;
      if (!option.allowed) why = option.reason || "Not available for this clip.";
      else if (!affordable) {
        why = `Needs ${option.charged_xeconds} xeconds; your balance does not cover it (one pool, free or paid, must cover a whole render).`;
      }
      const input = el("input", {
        type: "radio",
        name: "target_fps",
        value: String(fps),
        id,
        disabled: !allowed,
        "aria-describedby": `${id}-detail`,
      });
      const detail = el(
        "span",
        { class: why ? "why" : "meta", id: `${id}-detail` },
        why || `${fmtXeconds(option.charged_xeconds)} · ${bandLabel(option.band)} band · ${option.watermarked ? "watermarked (free xeconds)" : "clean (paid xeconds)"}`,
      );
      const label = el("label", { for: id }, `${fps} fps`, detail);
      const row = el("div", { class: `option${allowed ? "" : " disabled"}`, "data-fps": String(fps) }, input, label);
      fieldset.append(row);
      if (allowed && !firstAllowed) firstAllowed = input;
    }
    if (firstAllowed) firstAllowed.checked = true;
    document.getElementById("render-button").disabled = !firstAllowed;
    // A preview needs an allowed frame rate too; its price is quoted separately (quotePreview).
    document.getElementById("preview-button").disabled = !firstAllowed;
    document.getElementById("estimate").classList.remove("hidden");
    setText("render-status", firstAllowed ? "" : "None of the frame rates can be rendered for this clip; see the reasons above.");
  }

  // What a preview of this clip costs now: free while today's free previews last.
  async function quotePreview(key) {
    const seconds = (dashboard.previews && dashboard.previews.default_seconds) || 3;
    const quote = await api("POST", "/pricing/estimate-video", {
      r2_key: key,
      target_fps_options: FPS_OPTIONS,
      preview_seconds: seconds,
    });
    const left = quote.free_previews_left;
    const prices = (quote.options || []).filter((o) => o.allowed).map((o) => `${o.target_fps} fps: ${fmtXeconds(o.charged_xeconds)}`);
    const price = left > 0 ? `free (${left} free ${left === 1 ? "preview" : "previews"} left today)` : prices.join(", ");
    document.getElementById("preview-button").textContent = `Preview first ${seconds} s`;
    setText("preview-hint", `Renders only the first ${seconds} s at the chosen frame rate, always watermarked: ${price}.`);
  }

  // The output choices of the render form as POST /jobs takes them; the server checks them
  // again and answers a 400 that names what is allowed.
  function outputChoices() {
    const output = {
      container: document.getElementById("output-container").value,
      codec: document.getElementById("output-codec").value,
      quality: document.getElementById("output-quality").value,
    };
    if (!document.getElementById("output-audio").checked) output.audio = "none";
    const playback = document.getElementById("playback-fps").value;
    return { output, playback_fps: playback ? Number(playback) : null };
  }

  function initOutputChoices() {
    const container = document.getElementById("output-container");
    const codec = document.getElementById("output-codec");
    const prores = codec.querySelector('option[value="prores"]');
    const sync = () => {
      prores.disabled = container.value !== "mov";
      if (prores.disabled && codec.value === "prores") codec.value = "h264";
    };
    container.addEventListener("change", sync);
    sync();
  }

  function initRender() {
    const form = document.getElementById("render-form");
    const button = document.getElementById("render-button");
    const previewButton = document.getElementById("preview-button");
    initOutputChoices();
    async function start(preview) {
      const chosen = form.querySelector('input[name="target_fps"]:checked');
      if (!chosen || !dashboard.upload) return;
      button.disabled = true;
      previewButton.disabled = true;
      const what = preview ? "preview" : "render";
      setText("render-status", `Starting the ${what}…`);
      try {
        const { output, playback_fps } = outputChoices();
        const body = {
          r2_key: dashboard.upload.key,
          project_id: dashboard.upload.project_id,
          target_fps: Number(chosen.value),
          output,
        };
        if (playback_fps) body.playback_fps = playback_fps;
        if (preview) body.preview = true;
        const job = await api("POST", "/jobs", body);
        const label = preview ? "Preview" : "Render";
        setText("render-status", `${label} accepted (${STATUS_TEXT[job.live_status] || job.live_status}), ${job.charged_xeconds} xeconds charged. Opening its project…`);
        window.location.assign(`/studio/projects/${encodeURIComponent(dashboard.upload.project_id)}`);
      } catch (error) {
        setText("render-status", error.message);
        button.disabled = false;
        previewButton.disabled = false;
      }
    }
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      start(false);
    });
    previewButton.addEventListener("click", () => start(true));
  }

  function fileLine(file) {
    const bits = [file.filename, fmtBytes(file.size_bytes)];
    if (file.fps) bits.push(fmtFps(file.fps));
    if (file.width) bits.push(`${file.width}×${file.height}`);
    if (file.duration_sec) bits.push(fmtSeconds(file.duration_sec));
    return bits.join(" · ");
  }

  async function loadProjects() {
    const container = document.getElementById("projects");
    const data = await api("GET", "/projects?limit=50");
    const items = data.items || [];
    container.replaceChildren();
    if (!items.length) {
      container.append(el("p", { class: "muted", text: "No projects yet. Upload a clip to start one." }));
      return;
    }
    const table = el("table", {}, el("thead", {}, el("tr", {}, ...["Project", "Inputs", "Outputs", "Renders"].map((t) => el("th", { scope: "col", text: t })))));
    const body = el("tbody");
    for (const project of items) {
      const inputs = project.inputs || [];
      const outputs = project.outputs || [];
      const jobs = project.jobs || [];
      const link = el("a", { href: `/studio/projects/${encodeURIComponent(project.project_id)}`, text: project.name || "Untitled" });
      body.append(
        el(
          "tr",
          { "data-project-id": project.project_id },
          el("td", {}, link, el("div", { class: "small muted", text: fmtDate(project.created_at) })),
          el("td", { class: "small" }, ...inputs.map((f) => el("div", { text: fileLine(f) }))),
          el("td", { class: "small" }, ...(outputs.length ? outputs.map((f) => el("div", { text: fileLine(f) })) : ["–"])),
          el("td", {}, ...(jobs.length ? jobs.map((j) => el("div", {}, statusBadge(j.live_status), ` ${j.target_fps} fps${j.preview ? " preview" : ""}`)) : ["–"])),
        ),
      );
    }
    table.append(body);
    container.append(el("div", { class: "table-wrap" }, table));
  }

  // -- credit history (GET /me/ledger) ---------------------------------------------------------

  const LEDGER_PAGE = 10;
  const LEDGER_KIND_TEXT = {
    signup: "Signup credit",
    grant: "Credit added",
    purchase: "Credit pack",
    charge: "Render charge",
    refund: "Refund",
    cancel: "Cancel refund",
    adjustment: "Adjustment",
  };
  const ledgerState = { offset: 0 };

  async function loadLedger(offset = ledgerState.offset) {
    const container = document.getElementById("ledger-entries");
    if (!container) return;
    const page = await api("GET", `/me/ledger?limit=${LEDGER_PAGE}&offset=${offset}`);
    ledgerState.offset = page.offset;
    const items = page.items || [];
    container.replaceChildren();
    const older = document.getElementById("ledger-older");
    const newer = document.getElementById("ledger-newer");
    older.disabled = page.next_offset == null;
    newer.disabled = page.offset === 0;
    if (!items.length) {
      setText("ledger-range", "");
      container.append(el("p", { class: "muted", text: "No credit movements yet." }));
      return;
    }
    setText("ledger-range", `${page.offset + 1}–${page.offset + items.length} of ${page.total}`);
    const head = el("tr", {}, ...["When", "What", "Xeconds", "Pool"].map((t) => el("th", { scope: "col", text: t })));
    const body = el("tbody");
    for (const entry of items) {
      const amount = entry.amount_xeconds;
      body.append(
        el(
          "tr",
          { "data-entry-id": String(entry.entry_id), "data-kind": entry.kind },
          el("td", { class: "small", text: fmtDate(entry.created_at) }),
          el("td", {}, el("div", { text: LEDGER_KIND_TEXT[entry.kind] || entry.kind }), el("div", { class: "small muted", text: entry.description })),
          el("td", { class: amount < 0 ? "amount minus" : "amount plus", "data-role": "amount", text: amount > 0 ? `+${amount}` : String(amount) }),
          el("td", { text: entry.pool }),
        ),
      );
    }
    container.append(el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, head), body)));
  }

  function initLedger() {
    const older = document.getElementById("ledger-older");
    const newer = document.getElementById("ledger-newer");
    if (!older || !newer) return;
    const go = (offset) => loadLedger(Math.max(0, offset)).catch((error) => showPageError(error.message));
    older.addEventListener("click", () => go(ledgerState.offset + LEDGER_PAGE));
    newer.addEventListener("click", () => go(ledgerState.offset - LEDGER_PAGE));
  }

  // A page that navigates to the dashboard after doing something leaves the news here, so it
  // survives the navigation without a query string to craft or a server round trip.
  const NOTICE_KEY = "reframe-notice";
  function showCarriedNotice() {
    const message = sessionStorage.getItem(NOTICE_KEY);
    if (!message) return;
    sessionStorage.removeItem(NOTICE_KEY);
    const box = document.getElementById("page-notice");
    box.textContent = message;
    box.classList.remove("hidden");
  }

  async function initDashboard() {
    showCarriedNotice();
    initKeyButton();
    initUpload();
    initRender();
    initCopyButtons();
    initLedger();
    const results = await Promise.allSettled([loadMe(), loadPricing(), loadProjects(), loadLedger(0)]);
    const failed = results.find((r) => r.status === "rejected");
    if (failed) showPageError(failed.reason.message);
  }

  // -- project page --------------------------------------------------------------------------

  const projectState = { id: null, project: null, timers: new Map(), players: new Set() };

  function outputText(output) {
    if (!output) return "–";
    const quality = output.prores_profile ? `ProRes ${output.prores_profile}` : `CRF ${output.crf}`;
    const sound = output.audio === "none" ? "no sound" : "sound kept";
    return `${output.container.toUpperCase()}, ${output.codec}, ${quality}, ${sound}`;
  }

  function jobDetails(job) {
    const rows = [
      ["Target", fmtFps(job.target_fps)],
      ["Source", fmtFps(job.source_fps)],
      ["Output", outputText(job.output)],
      ["Playback", job.playback_fps ? `${fmtFps(job.playback_fps)} (slow motion, no sound)` : "at the target rate"],
      ["Duration", fmtSeconds(job.duration_sec)],
      ["Charged", `${fmtXeconds(job.charged_xeconds)} (${job.payment_kind || "–"})`],
      ["Watermarked", job.watermarked ? "yes (paid from free xeconds)" : "no"],
      ["Started", fmtDate(job.created_at)],
    ];
    if (job.finished_at) rows.push(["Finished", fmtDate(job.finished_at)]);
    if (job.refunded_xeconds) rows.push(["Refunded", fmtXeconds(job.refunded_xeconds)]);
    const dl = el("dl", { class: "details" });
    for (const [k, v] of rows) dl.append(el("dt", { text: k }), el("dd", { text: v }));
    return dl;
  }

  function renderJob(job) {
    const id = job.job_id;
    let box = document.querySelector(`[data-job-id="${CSS.escape(id)}"]`);
    if (!box) {
      box = el("article", { class: "job", "data-job-id": id, "aria-labelledby": `job-${id}-title` });
      document.getElementById("jobs").append(box);
    }
    const status = job.live_status;
    // A finished player is left alone: rebuilding it would interrupt playback.
    if (box.dataset.status === status && TERMINAL.has(status)) return box;
    box.dataset.status = status;
    // Each poll rebuilds the box; a keyboard user on its cancel button must not lose focus.
    const refocus = box.contains(document.activeElement) && document.activeElement.dataset.role === "cancel";
    box.replaceChildren();
    const kind = job.preview ? `preview (first ${job.preview_seconds} s)` : "render";
    box.append(el("h3", { id: `job-${id}-title` }, `${job.target_fps} fps ${kind} `, statusBadge(status)));
    if (!TERMINAL.has(status)) {
      const pct = Math.round((job.progress || 0) * 100);
      const label = el("div", { class: "progress-label" },
        el("span", { id: `job-${id}-label`, "data-role": "status-text", text: STATUS_TEXT[status] || status }),
        el("span", { "data-role": "percent", text: `${pct}%` }));
      const bar = el("progress", { max: "100", value: String(pct), "aria-labelledby": `job-${id}-label`, "data-role": "progress" });
      const frames = job.frames_total ? `${job.frames_done ?? 0} of ${job.frames_total} frames · ` : "";
      const eta = status === "processing" ? fmtEta(job.eta_sec) : "waiting to start";
      box.append(label, bar, el("p", { class: "small muted", "data-role": "eta", "aria-live": "polite", text: `${frames}${eta}` }));
      box.append(cancelButton(job, refocus));
    } else if (status === "failed" || status === "cancelled") {
      const fallback = status === "cancelled" ? "You cancelled this render." : "The render failed.";
      // A cancellation is the owner's own choice, not an error: shown as information.
      const tone = status === "cancelled" ? "info" : "bad";
      box.append(el("p", { class: `notice ${tone}`, "data-role": "error", text: job.error || fallback }));
      const refunded = job.refunded_xeconds || 0;
      box.append(el("p", { class: "notice ok", "data-role": "refund", tabindex: "-1", text: refunded ? `${fmtXeconds(refunded)} ${refunded === 1 ? "was" : "were"} refunded to your balance.` : "No xeconds were refunded." }));
    } else if (status === "done") {
      const slot = el("div", { "data-role": "player" }, el("p", { class: "muted", text: "Loading the player…" }));
      box.append(slot);
      mountPlayer(job, slot).catch((error) => slot.replaceChildren(el("p", { class: "notice bad", text: error.message })));
    }
    box.append(jobDetails(job));
    return box;
  }

  function cancelButton(job, focus) {
    const button = el("button", { type: "button", class: "danger", "data-role": "cancel" }, "Cancel render");
    const due = job.cancel_refund_xeconds;
    const status = el("p", { class: "small", role: "status", "data-role": "cancel-status", text: due == null ? "" : `Cancelling now refunds ${fmtXeconds(due)}.` });
    button.addEventListener("click", async () => {
      button.disabled = true;
      status.textContent = "Cancelling…";
      try {
        const cancelled = await api("POST", `/jobs/${encodeURIComponent(job.job_id)}/cancel`);
        window.clearTimeout(projectState.timers.get(job.job_id));
        projectState.timers.delete(job.job_id);
        const box = renderJob(cancelled);
        box.querySelector('[data-role="refund"]')?.focus();
      } catch (error) {
        // 409: it ended (done or failed) in the meantime; show what it became.
        status.textContent = error.message;
        button.disabled = false;
        if (error.status === 409) {
          api("GET", `/jobs/${encodeURIComponent(job.job_id)}`).then(renderJob, () => {});
        }
      }
    });
    if (focus) window.setTimeout(() => button.focus(), 0);
    return el("div", { class: "actions" }, button, status);
  }

  async function mountPlayer(job, slot) {
    const project = projectState.project;
    const input = (project.inputs || []).find((f) => f.key === job.r2_key) || (project.inputs || [])[0];
    const base = `/projects/${encodeURIComponent(projectState.id)}/files/`;
    const [before, afterUrl] = await Promise.all([
      api("GET", base + encodeURIComponent(input.file_id) + "/download"),
      job.output_url ? Promise.resolve(job.output_url) : api("GET", base + encodeURIComponent(job.output_file_id) + "/download").then((d) => d.url),
    ]);
    const player = buildCompare(`job-${job.job_id}`, before.url, afterUrl, input.fps, job.target_fps);
    const download = el("a", { class: "button", href: afterUrl, download: "", "data-role": "download" }, "Download the render");
    slot.replaceChildren(player, el("div", { class: "actions" }, download));
  }

  function schedulePoll(jobId) {
    if (projectState.timers.has(jobId)) return;
    const tick = async () => {
      try {
        const job = await api("GET", `/jobs/${encodeURIComponent(jobId)}`);
        // Cancelled from this page while the request was in flight: its answer is stale.
        if (!projectState.timers.has(jobId)) return;
        if (TERMINAL.has(job.live_status)) {
          projectState.timers.delete(jobId);
          // Outputs appear in the project when a render finishes: reload files first.
          await loadProject(false);
          renderJob(job);
          return;
        }
        renderJob(job);
      } catch (error) {
        showPageError(error.message);
      }
      projectState.timers.set(jobId, window.setTimeout(tick, POLL_MS));
    };
    projectState.timers.set(jobId, window.setTimeout(tick, POLL_MS));
  }

  function renderFiles(project) {
    const container = document.getElementById("files");
    container.replaceChildren();
    const files = [...(project.inputs || []), ...(project.outputs || [])];
    if (!files.length) {
      container.append(el("p", { class: "muted", text: "No files yet." }));
      return;
    }
    const list = el("ul", { class: "small" });
    for (const file of files) {
      const isInput = file.role === "input";
      const link = el("a", { href: "#", "data-file-id": file.file_id, text: isInput ? "Download original" : "Download render" });
      link.addEventListener("click", async (event) => {
        event.preventDefault();
        try {
          const data = await api("GET", `/projects/${encodeURIComponent(project.project_id)}/files/${encodeURIComponent(file.file_id)}/download`);
          window.location.assign(data.url);
        } catch (error) {
          showPageError(error.message);
        }
      });
      const usable = file.status === "ready";
      list.append(el("li", {}, el("strong", { text: isInput ? "Input: " : "Output: " }), fileLine(file), usable ? " · " : ` · ${file.status}`, usable ? link : null));
    }
    container.append(list);
  }

  function renderShare(pageUrl) {
    const active = document.getElementById("share-active");
    const none = document.getElementById("share-none");
    if (pageUrl) {
      document.getElementById("share-url").value = pageUrl;
      document.getElementById("share-open").href = pageUrl;
      active.classList.remove("hidden");
      none.classList.add("hidden");
    } else {
      active.classList.add("hidden");
      none.classList.remove("hidden");
    }
  }

  function initShare() {
    document.getElementById("share-create").addEventListener("click", async () => {
      try {
        const share = await api("POST", `/projects/${encodeURIComponent(projectState.id)}/share`);
        renderShare(share.page_url);
        setText("share-status", "Share link created.");
        document.getElementById("share-url").focus();
      } catch (error) {
        setText("share-status", error.message);
      }
    });
    document.getElementById("share-revoke").addEventListener("click", async () => {
      try {
        await api("DELETE", `/projects/${encodeURIComponent(projectState.id)}/share`);
        renderShare(null);
        setText("share-status", "Share link revoked: it no longer opens.");
        document.getElementById("share-create").focus();
      } catch (error) {
        setText("share-status", error.message);
      }
    });
  }

  function initDelete() {
    const button = document.getElementById("project-delete");
    button.addEventListener("click", async () => {
      const name = (projectState.project && projectState.project.name) || "this project";
      const question = `Delete “${name}” with its clips, renders and review link? This cannot be undone. Renders still queued or running are cancelled and refunded.`;
      if (!window.confirm(question)) return;
      button.disabled = true;
      setText("delete-status", "Deleting…");
      try {
        await api("DELETE", `/projects/${encodeURIComponent(projectState.id)}`);
      } catch (error) {
        button.disabled = false;
        setText("delete-status", error.message);
        return;
      }
      // Stop polling the project's jobs: their project is gone.
      for (const timer of projectState.timers.values()) window.clearTimeout(timer);
      projectState.timers.clear();
      sessionStorage.setItem(NOTICE_KEY, `Deleted “${name}”: its files, renders and review link are gone.`);
      window.location.assign("/studio#history");
    });
  }

  async function loadProject(renderJobs = true) {
    const project = await api("GET", `/projects/${encodeURIComponent(projectState.id)}`);
    projectState.project = project;
    setText("project-name", project.name || "Untitled project");
    document.title = `${project.name || "Project"} · Reframe`;
    renderFiles(project);
    if (renderJobs) {
      const jobsBox = document.getElementById("jobs");
      jobsBox.replaceChildren();
      const summaries = project.jobs || [];
      if (!summaries.length) jobsBox.append(el("p", { class: "muted", text: "No renders yet. Start one from the dashboard." }));
      // The project lists job summaries; the full record (progress, ETA, error, refund) is
      // what GET /jobs/{id} returns, the same call the polling uses.
      const jobs = await Promise.all(summaries.map((j) => api("GET", `/jobs/${encodeURIComponent(j.job_id)}`)));
      for (const job of jobs) {
        renderJob(job);
        if (!TERMINAL.has(job.live_status)) schedulePoll(job.job_id);
      }
      renderShare(project.share_page_url || null);
    }
    return project;
  }

  async function initProject() {
    projectState.id = document.getElementById("project-name").dataset.projectId;
    initShare();
    initDelete();
    initCopyButtons();
    try {
      await loadProject(true);
    } catch (error) {
      showPageError(error.message);
    }
  }

  // -- entry ---------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    const page = document.body.dataset.page;
    if (page === "studio") initDashboard();
    else if (page === "project") initProject();
    for (const compare of document.querySelectorAll("[data-compare]")) initCompare(compare);
  });
})();
