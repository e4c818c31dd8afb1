// keyward console: dialogs and small forms. Pages are rendered by the server; this script only
// talks to the JSON API with the session's CSRF token. Secrets (a new key, a pasted key) go in
// request bodies, never in a URL.
"use strict";

(() => {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content ?? "";
  const csrf = meta("csrf-token");
  const org = meta("org-id");
  const $ = (id) => document.getElementById(id);

  async function api(method, path, body) {
    let response;
    try {
      response = await fetch(path, {
        method,
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (_) {
      return { ok: false, status: 0, data: { detail: "The server could not be reached. Check your connection and try again." } };
    }
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    return { ok: response.ok, status: response.status, data };
  }

  // ---- Field errors ------------------------------------------------------------------------
  function clearErrors(form) {
    form.querySelectorAll(".field-error").forEach((el) => { el.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
    form.querySelectorAll(".alert.error").forEach((el) => { el.hidden = true; el.textContent = ""; });
  }

  // Errors from a problem+json answer, each under the field it names; anything else (a 403 for
  // a delegated limit, a 409 for a revoked key) in the dialog's general box.
  function showErrors(form, result, generalBox) {
    const problem = result?.data;
    const errors = problem?.errors ?? [];
    let shown = 0;
    for (const error of errors) {
      const match = /^([a-z_]+)(?:\[(\d+)\])?$/.exec(error.field ?? "");
      const base = match ? match[1] : error.field;
      const slot = form.querySelector(`[data-error-for="${base}"]`);
      if (!slot) continue;
      const prefix = match && match[2] !== undefined && base === "ip_allowlist" ? `Line ${Number(match[2]) + 1}: ` : "";
      slot.textContent = slot.textContent ? `${slot.textContent} ${prefix}${error.message}` : `${prefix}${error.message}`;
      form.querySelectorAll(`[name="${base}"]`).forEach((input) => input.setAttribute("aria-invalid", "true"));
      shown += 1;
    }
    if (generalBox && shown === 0) {
      let text = problem?.detail ?? "Something went wrong. Try again.";
      if (result?.status === 403) text = `You can't make this change: ${text}`;
      generalBox.textContent = text;
      generalBox.hidden = false;
      generalBox.focus?.();
    }
    const firstInvalid = form.querySelector("[aria-invalid]");
    if (firstInvalid) {
      const details = firstInvalid.closest("details");
      if (details) details.open = true;
      firstInvalid.focus();
    }
  }

  function copyButton(button) {
    button.addEventListener("click", async () => {
      const input = $(button.dataset.copy);
      try {
        await navigator.clipboard.writeText(input.value);
      } catch (_) {
        input.select();
        document.execCommand("copy");
      }
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = "Copy"; }, 2000);
    });
  }
  document.querySelectorAll("button.copy").forEach(copyButton);

  // ---- The key form (create and edit share its fields) -------------------------------------
  // `p` is the id prefix of the dialog's fields: "" for create, "edit-" for edit.
  function keyForm(form, p) {
    const field = (id) => $(`${p}${id}`);
    const scopeBoxes = () => [...form.querySelectorAll('input[name="scopes"]')];
    const scopeError = field("scope-error");
    const channelList = field("channel-list");
    const checked = (name) => [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((el) => el.value);
    const submit = form.querySelector('button[type="submit"]');

    const checkScopes = () => {
      const none = !scopeBoxes().some((box) => box.checked);
      scopeError.textContent = none ? "Select at least one scope." : "";
      submit.disabled = none;
      return !none;
    };
    scopeBoxes().forEach((box) => box.addEventListener("change", checkScopes));
    const syncChannels = () => {
      const some = form.querySelector('input[name="channel_scope"]:checked')?.value === "some";
      if (channelList) channelList.hidden = !some;
    };
    form.querySelectorAll('input[name="channel_scope"]').forEach((radio) => radio.addEventListener("change", syncChannels));
    syncChannels();

    const expiryBody = () => {
      const text = form.elements.expires_at.value.trim();
      if (text === "") return null;
      const when = new Date(text);
      return Number.isNaN(when.getTime()) ? text : when.toISOString();
    };
    const body = () => {
      const value = (name) => form.elements[name].value.trim();
      const payload = { name: value("name"), scopes: checked("scopes") };
      const rate = value("rate_limit");
      payload.rate_limit = rate === "" ? null : /^-?\d+$/.test(rate) ? Number(rate) : rate;
      payload.expires_at = expiryBody();
      payload.ip_allowlist = value("ip_allowlist").split("\n").map((line) => line.trim()).filter((line) => line !== "");
      payload.phone_allowlist = checked("phone_allowlist");
      const some = form.querySelector('input[name="channel_scope"]:checked')?.value === "some";
      payload.channels = some ? checked("channels") : "all";
      return payload;
    };
    return { checkScopes, syncChannels, body, submit };
  }

  // A time as the datetime-local field shows it: the browser's local time, to the minute.
  function localField(iso) {
    if (!iso) return "";
    const when = new Date(iso);
    const pad = (n) => String(n).padStart(2, "0");
    return `${when.getFullYear()}-${pad(when.getMonth() + 1)}-${pad(when.getDate())}T${pad(when.getHours())}:${pad(when.getMinutes())}`;
  }

  // ---- Create API key ----------------------------------------------------------------------
  const createDialog = $("create-dialog");
  if (createDialog) {
    const form = $("create-form");
    const fields = keyForm(form, "");
    const submit = $("create-submit");
    let created = false;

    // Every opening starts from the defaults: nothing typed before, no stale error.
    const reset = () => {
      form.reset();
      clearErrors(form);
      form.querySelector("details.advanced").open = false;
      fields.syncChannels();
      fields.checkScopes();
    };
    $("open-create").addEventListener("click", () => {
      if (!created) reset();
      createDialog.showModal();
      $("key-name").focus();
    });
    $("create-cancel").addEventListener("click", () => createDialog.close());
    const done = () => window.location.assign("/settings/api-keys");
    $("created-done").addEventListener("click", done);
    createDialog.addEventListener("cancel", (event) => {
      if (created) {
        event.preventDefault();
        done();
      }
    });

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (created || !fields.checkScopes()) return;
      clearErrors(form);
      submit.disabled = true;
      submit.textContent = "Creating…";
      const payload = fields.body();
      payload.hmac_required = $("hmac-required").checked;
      if (payload.rate_limit === null) delete payload.rate_limit;
      if (payload.expires_at === null) delete payload.expires_at;
      const result = await api("POST", `/v1/orgs/${org}/keys`, payload);
      submit.textContent = "Create";
      submit.disabled = false;
      if (!result.ok) {
        showErrors(form, result, $("create-error"));
        return;
      }
      created = true;
      $("create-fields").hidden = true;
      $("created-panel").hidden = false;
      $("created-secret").value = result.data.secret;
      if (result.data.signing_secret) {
        $("created-signing").hidden = false;
        $("created-signing-secret").value = result.data.signing_secret;
      }
      $("create-title").textContent = "API key created";
      submit.hidden = true;
      $("create-cancel").hidden = true;
      $("created-done").hidden = false;
      $("created-done").focus();
    });
  }

  // ---- Edit API key (from a row or from the key's page) -------------------------------------
  const editDialog = $("edit-dialog");
  if (editDialog) {
    const form = $("edit-form");
    const fields = keyForm(form, "edit-");
    let key = null;
    let opener = null;
    let expiryAsShown = "";

    const open = (json, button) => {
      key = JSON.parse(json);
      opener = button;
      form.reset();
      clearErrors(form);
      $("edit-prefix").textContent = `${key.prefix}…`;
      $("edit-key-name").value = key.name;
      form.querySelectorAll('input[name="scopes"]').forEach((box) => { box.checked = key.scopes.includes(box.value); });
      const scoped = Array.isArray(key.channels);
      form.querySelector(`input[name="channel_scope"][value="${scoped ? "some" : "all"}"]`).checked = true;
      form.querySelectorAll('input[name="channels"]').forEach((box) => { box.checked = scoped && key.channels.includes(box.value); });
      $("edit-rate-limit").value = key.rate_limit ?? "";
      expiryAsShown = localField(key.expires_at);
      $("edit-expiry").value = expiryAsShown;
      $("edit-ip-allowlist").value = key.ip_allowlist.join("\n");
      form.querySelectorAll('input[name="phone_allowlist"]').forEach((box) => { box.checked = key.phone_allowlist.includes(box.value); });
      fields.syncChannels();
      fields.checkScopes();
      editDialog.showModal();
      $("edit-key-name").focus();
    };
    document.querySelectorAll("button.edit").forEach((button) => {
      button.addEventListener("click", () => open(button.closest("[data-key]").dataset.key, button));
    });
    $("open-edit")?.addEventListener("click", (event) => open($("key-detail").dataset.key, event.currentTarget));
    $("edit-cancel").addEventListener("click", () => editDialog.close());
    editDialog.addEventListener("close", () => opener?.focus());

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!fields.checkScopes()) return;
      clearErrors(form);
      const payload = fields.body();
      // An untouched expiry is not sent: the field holds minutes, and an expired key's expiry
      // is in the past, which a new value may not be.
      if (form.elements.expires_at.value === expiryAsShown) delete payload.expires_at;
      fields.submit.disabled = true;
      fields.submit.textContent = "Saving…";
      const result = await api("PATCH", `/v1/orgs/${org}/keys/${key.id}`, payload);
      fields.submit.textContent = "Save changes";
      fields.submit.disabled = false;
      if (result.ok) {
        window.location.reload();
      } else {
        showErrors(form, result, $("edit-error"));
      }
    });
  }

  // ---- Roll ----------------------------------------------------------------------------------
  const rollDialog = $("roll-dialog");
  if (rollDialog) {
    const form = $("roll-form");
    const keyId = $("key-detail").dataset.keyId;
    let rolled = false;
    $("open-roll").addEventListener("click", () => {
      clearErrors(form);
      rollDialog.showModal();
      form.querySelector('input[name="grace_seconds"]:checked').focus();
    });
    $("roll-cancel").addEventListener("click", () => rollDialog.close());
    const done = () => window.location.reload();
    $("rolled-done").addEventListener("click", done);
    rollDialog.addEventListener("cancel", (event) => {
      if (rolled) {
        event.preventDefault();
        done();
      }
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (rolled) return;
      clearErrors(form);
      const grace = Number(form.querySelector('input[name="grace_seconds"]:checked').value);
      const submit = $("roll-submit");
      submit.disabled = true;
      submit.textContent = "Rolling…";
      const result = await api("POST", `/v1/orgs/${org}/keys/${keyId}/roll`, { grace_seconds: grace });
      submit.textContent = "Roll key";
      submit.disabled = false;
      if (!result.ok) {
        showErrors(form, result, $("roll-error"));
        return;
      }
      rolled = true;
      $("roll-title").textContent = "API key rolled";
      $("roll-fields").hidden = true;
      $("rolled-panel").hidden = false;
      $("rolled-secret").value = result.data.secret;
      if (result.data.signing_secret) {
        $("rolled-signing").hidden = false;
        $("rolled-signing-secret").value = result.data.signing_secret;
      }
      $("rolled-old-expiry").textContent = grace === 0
        ? "The old key is revoked."
        : `The old key keeps working until ${new Date(Date.now() + grace * 1000).toUTCString()}.`;
      submit.hidden = true;
      $("roll-cancel").hidden = true;
      $("rolled-done").hidden = false;
      $("rolled-done").focus();
    });
  }

  // ---- Revoke ----------------------------------------------------------------------------
  const revokeDialog = $("revoke-dialog");
  if (revokeDialog) {
    let keyId = null;
    let opener = null;
    document.querySelectorAll("button.revoke").forEach((button) => {
      button.addEventListener("click", () => {
        keyId = button.dataset.keyId;
        opener = button;
        $("revoke-name").textContent = button.dataset.keyName;
        $("revoke-error").hidden = true;
        revokeDialog.showModal();
        $("revoke-cancel").focus();
      });
    });
    $("revoke-cancel").addEventListener("click", () => revokeDialog.close());
    revokeDialog.addEventListener("close", () => opener?.focus());
    $("revoke-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const confirm = $("revoke-confirm");
      confirm.disabled = true;
      const result = await api("POST", `/v1/orgs/${org}/keys/${keyId}/revoke`, {});
      confirm.disabled = false;
      if (result.ok) {
        window.location.reload();
      } else {
        $("revoke-error").textContent = result.data?.detail ?? "The key could not be revoked.";
        $("revoke-error").hidden = false;
      }
    });
  }

  // ---- Find a key: a pasted full key is looked up with a POST, never put in the URL ---------
  const fullKey = /^[a-z][a-z0-9]{0,7}_(live|test)_[0-9A-Za-z]{32,}$/;
  const lookupDialog = $("lookup-dialog");
  if (lookupDialog) {
    const form = $("lookup-form");
    const input = $("lookup-key");
    const open = (value) => {
      form.reset();
      clearErrors(form);
      input.value = value ?? "";
      lookupDialog.showModal();
      input.focus();
    };
    $("open-lookup").addEventListener("click", () => open(""));
    $("lookup-cancel").addEventListener("click", () => lookupDialog.close());
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form);
      const key = input.value.trim();
      if (key === "") {
        $("lookup-error").textContent = "Paste a full API key.";
        input.setAttribute("aria-invalid", "true");
        return;
      }
      const result = await api("POST", "/v1/keys/lookup", { key });
      if (result.ok && result.data?.key?.org_id === org) {
        window.location.assign(`/settings/api-keys/${result.data.key.id}`);
      } else if (result.status === 404 || result.ok) {
        $("lookup-error").textContent = "No key of this organization matches. Check that the whole key was pasted.";
        input.setAttribute("aria-invalid", "true");
      } else {
        $("lookup-error").textContent = result.data?.detail ?? "The key could not be looked up.";
      }
    });
    // Pasting a whole key into the search box looks it up instead of searching for it.
    $("key-filters")?.addEventListener("submit", (event) => {
      const search = $("key-search");
      if (fullKey.test(search.value.trim())) {
        event.preventDefault();
        const value = search.value.trim();
        search.value = "";
        open(value);
        form.requestSubmit();
      }
    });
  }

  // ---- Audit log: expandable events --------------------------------------------------------
  document.querySelectorAll("button.toggle-event").forEach((button) => {
    button.addEventListener("click", () => {
      const detail = $(button.getAttribute("aria-controls"));
      const open = button.getAttribute("aria-expanded") !== "true";
      button.setAttribute("aria-expanded", String(open));
      button.textContent = open ? "Hide" : "Details";
      detail.hidden = !open;
      button.closest("tr").classList.toggle("expanded", open);
    });
  });

  // ---- Members -------------------------------------------------------------------------------
  const memberDialog = $("member-dialog");
  if (memberDialog) {
    const form = $("member-form");
    $("open-add-member").addEventListener("click", () => {
      form.reset();
      clearErrors(form);
      memberDialog.showModal();
      $("member-email").focus();
    });
    $("member-cancel").addEventListener("click", () => memberDialog.close());
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form);
      const payload = Object.fromEntries(new FormData(form).entries());
      const submit = $("member-submit");
      submit.disabled = true;
      const result = await api("POST", `/v1/orgs/${org}/members`, payload);
      submit.disabled = false;
      if (result.ok) {
        window.location.reload();
      } else if (result.status === 409) {
        $("member-email-error").textContent = "A member with this email already exists.";
        $("member-email").setAttribute("aria-invalid", "true");
        $("member-email").focus();
      } else {
        showErrors(form, result, $("member-error"));
      }
    });
  }
  const removeDialog = $("remove-dialog");
  if (removeDialog) {
    let memberId = null;
    let opener = null;
    document.querySelectorAll("button.remove-member").forEach((button) => {
      button.addEventListener("click", () => {
        memberId = button.dataset.memberId;
        opener = button;
        $("remove-email").textContent = button.dataset.memberEmail;
        $("remove-error").hidden = true;
        removeDialog.showModal();
        $("remove-cancel").focus();
      });
    });
    $("remove-cancel").addEventListener("click", () => removeDialog.close());
    removeDialog.addEventListener("close", () => opener?.focus());
    $("remove-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const result = await api("DELETE", `/v1/orgs/${org}/members/${memberId}`);
      if (result.ok) {
        window.location.reload();
      } else {
        $("remove-error").textContent = result.data?.detail ?? "The member could not be removed.";
        $("remove-error").hidden = false;
      }
    });
  }

  // ---- Phone numbers and channels --------------------------------------------------------
  const addForms = [...document.querySelectorAll("form.add-form")];
  addForms.forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      // A message left under the other form belongs to an earlier attempt: clear both.
      addForms.forEach(clearErrors);
      const invalid = [...form.elements].filter((el) => el.willValidate && !el.checkValidity());
      if (invalid.length > 0) {
        for (const input of invalid) {
          const slot = form.querySelector(`[data-error-for="${input.name}"]`);
          if (slot) slot.textContent = input.dataset.invalidMessage && !input.validity.valueMissing ? input.dataset.invalidMessage : input.validationMessage;
          input.setAttribute("aria-invalid", "true");
        }
        invalid[0].focus();
        return;
      }
      const payload = Object.fromEntries(new FormData(form).entries());
      const result = await api("POST", `/v1/orgs/${org}/${form.dataset.endpoint}`, payload);
      if (result.ok) {
        window.location.reload();
      } else {
        const slot = form.querySelector(".field-error");
        if (result.status === 409 && slot) {
          slot.textContent = result.data?.detail ?? "Already exists.";
        } else {
          showErrors(form, result, null);
          if (!form.querySelector("[aria-invalid]") && slot) slot.textContent = result.data?.detail ?? "Something went wrong.";
        }
      }
    });
  });
})();
