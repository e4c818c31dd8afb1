// keyward console: dialogs, the create/revoke flows and small forms. Pages are rendered by the
// server; this script only talks to the JSON API with the session's CSRF token.
"use strict";

(() => {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content ?? "";
  const csrf = meta("csrf-token");
  const org = meta("org-id");
  const $ = (id) => document.getElementById(id);

  async function api(method, path, body) {
    const response = await fetch(path, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    return { ok: response.ok, status: response.status, data };
  }

  // Field errors from a problem+json answer, shown under the field they name.
  function clearErrors(form) {
    form.querySelectorAll(".field-error").forEach((el) => { el.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
  }

  function showErrors(form, problem, generalBox) {
    const errors = problem?.errors ?? [];
    let shown = 0;
    for (const error of errors) {
      const match = /^([a-z_]+)(?:\[(\d+)\])?$/.exec(error.field ?? "");
      const base = match ? match[1] : error.field;
      const slot = form.querySelector(`[data-error-for="${base}"]`);
      if (!slot) continue;
      const prefix = match && match[2] !== undefined && base === "ip_allowlist" ? `Line ${Number(match[2]) + 1}: ` : "";
      slot.textContent = slot.textContent ? `${slot.textContent} ${prefix}${error.message}` : `${prefix}${error.message}`;
      const input = form.querySelector(`[name="${base}"]`);
      if (input) input.setAttribute("aria-invalid", "true");
      shown += 1;
    }
    if (generalBox) {
      if (shown === 0) {
        generalBox.textContent = problem?.detail ?? "Something went wrong. Try again.";
        generalBox.hidden = false;
      } else {
        generalBox.hidden = true;
      }
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

  // ---- Create API key -------------------------------------------------------------------
  const createDialog = $("create-dialog");
  if (createDialog) {
    const form = $("create-form");
    const submit = $("create-submit");
    const scopeError = $("scope-error");
    const scopeBoxes = () => [...form.querySelectorAll('input[name="scopes"]')];
    let created = false;

    const checkScopes = () => {
      const none = !scopeBoxes().some((box) => box.checked);
      scopeError.textContent = none ? "Select at least one scope." : "";
      submit.disabled = none;
      return !none;
    };
    scopeBoxes().forEach((box) => box.addEventListener("change", checkScopes));

    const channelList = $("channel-list");
    const syncChannels = () => {
      const some = form.querySelector('input[name="channel_scope"]:checked')?.value === "some";
      if (channelList) channelList.hidden = !some;
    };
    form.querySelectorAll('input[name="channel_scope"]').forEach((radio) => radio.addEventListener("change", syncChannels));
    syncChannels();

    $("open-create").addEventListener("click", () => {
      createDialog.showModal();
      $("key-name").focus();
      checkScopes();
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

    const body = () => {
      const value = (name) => form.elements[name].value.trim();
      const checked = (name) => [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((el) => el.value);
      const payload = { name: value("name"), scopes: checked("scopes"), hmac_required: $("hmac-required").checked };
      const rate = value("rate_limit");
      if (rate !== "") payload.rate_limit = /^-?\d+$/.test(rate) ? Number(rate) : rate;
      const expiry = value("expires_at");
      if (expiry !== "") {
        const when = new Date(expiry);
        payload.expires_at = Number.isNaN(when.getTime()) ? expiry : when.toISOString();
      }
      payload.ip_allowlist = value("ip_allowlist").split("\n").map((line) => line.trim()).filter((line) => line !== "");
      payload.phone_allowlist = checked("phone_allowlist");
      const some = form.querySelector('input[name="channel_scope"]:checked')?.value === "some";
      payload.channels = some ? checked("channels") : "all";
      return payload;
    };

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (created || !checkScopes()) return;
      clearErrors(form);
      $("create-error").hidden = true;
      submit.disabled = true;
      submit.textContent = "Creating…";
      const result = await api("POST", `/v1/orgs/${org}/keys`, body());
      submit.textContent = "Create";
      submit.disabled = false;
      if (!result.ok) {
        showErrors(form, result.data, $("create-error"));
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

  // ---- Revoke -----------------------------------------------------------------------------
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

  // ---- Phone numbers and channels --------------------------------------------------------
  document.querySelectorAll("form.add-form").forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form);
      const payload = Object.fromEntries(new FormData(form).entries());
      const result = await api("POST", `/v1/orgs/${org}/${form.dataset.endpoint}`, payload);
      if (result.ok) {
        window.location.reload();
      } else {
        const slot = form.querySelector(".field-error");
        if (result.status === 409 && slot) {
          slot.textContent = result.data?.detail ?? "Already exists.";
        } else {
          showErrors(form, result.data, null);
          if (!form.querySelector("[aria-invalid]") && slot) slot.textContent = result.data?.detail ?? "Something went wrong.";
        }
      }
    });
  });
})();
