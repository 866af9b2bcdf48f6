"use strict";
const $ = (id) => document.getElementById(id);
const KEY = "pneumonia-token";  // sessionStorage: this tab only, gone when it closes

function authorised(options) {
  const token = sessionStorage.getItem(KEY);
  const headers = token ? { Authorization: "Bearer " + token } : {};
  return Object.assign({}, options || {}, { headers });
}

function needToken(response) {
  if (response.status !== 401) return false;
  showError("This service needs its access token: enter it above.");
  $("token").focus();
  return true;
}

async function errorText(response) {
  try { const body = await response.json(); return body.error || JSON.stringify(body); }
  catch (e) { return response.status + " " + response.statusText; }
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  $("status").textContent = "";
}

async function analyse(file) {
  $("error").hidden = true;
  $("result").hidden = true;
  $("overlay").hidden = true;
  $("status").textContent = "analysing " + file.name + " ...";
  $("preview").src = URL.createObjectURL(file);
  const form = new FormData();
  form.append("files", file);
  const response = await fetch("predict", authorised({ method: "POST", body: form }));
  if (needToken(response)) return;
  if (!response.ok) { showError(await errorText(response)); return; }
  const body = await response.json();
  const result = body.results[0];
  if (result.error) { showError(result.filename + ": " + result.error); return; }
  $("probability").textContent = result.probability.toFixed(3);
  $("label").textContent = result.label;
  $("label").className = result.label;
  const viral = result.subtype_probability;
  $("subtype").hidden = viral === null || viral === undefined;
  $("subtype").textContent = $("subtype").hidden ? "" :
    (result.subtype ? "subtype: " + result.subtype + ", " : "if pneumonia: ") +
    "P(viral | pneumonia) " + viral.toFixed(3);
  $("threshold").textContent = "label at the stored threshold " + body.threshold.toPrecision(3) +
    " (rule " + body.threshold_rule + "), model " + body.model_version;
  if (result.borderline) {
    $("threshold").textContent += "; borderline: P within [" + body.borderline.low.toPrecision(3) +
      ", " + body.borderline.high.toPrecision(3) + "), where the file the image comes from " +
      "could change the label";
  }
  const flagged = result.in_distribution === false;
  $("ood").hidden = !flagged;
  $("result").classList.toggle("untrusted", flagged);
  $("guard").textContent = body.guard.active
    ? "out-of-distribution score " + result.ood_score.toFixed(2) + " (flagged above " +
      body.guard.threshold.toPrecision(3) + ")"
    : "no out-of-distribution guard: " + body.guard.reason;
  $("result").hidden = false;
  $("status").textContent = "computing Grad-CAM ...";
  const cam = new FormData();
  cam.append("file", file);
  const overlay = await fetch("explain", authorised({ method: "POST", body: cam }));
  if (!overlay.ok) { showError("Grad-CAM: " + await errorText(overlay)); return; }
  $("overlay").src = URL.createObjectURL(await overlay.blob());
  $("overlay").hidden = false;
  $("status").textContent = "done: " + file.name;
}

$("preview").addEventListener("error", () => { $("preview").alt = "(no preview: the browser cannot show this format)"; });
$("file").addEventListener("change", (e) => { if (e.target.files.length) analyse(e.target.files[0]); });
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files.length) analyse(e.dataTransfer.files[0]);
});
function loadModel() {
  fetch("model", authorised()).then((r) => {
    if (r.status === 401) { $("model").textContent = "enter the access token to see the model"; return null; }
    return r.json();
  }).then((m) => {
    if (!m) return;
    $("model").textContent = "model " + m.model_version + " (" + m.architecture + "), threshold " +
      m.threshold.toPrecision(3) + " by rule " + m.threshold_rule;
  }).catch(() => { $("model").textContent = "model details unavailable"; });
}

$("tokenbox").addEventListener("submit", (e) => {
  e.preventDefault();
  const token = $("token").value.trim();
  if (token) sessionStorage.setItem(KEY, token); else sessionStorage.removeItem(KEY);
  $("token").value = "";
  $("error").hidden = true;
  loadModel();
});
loadModel();
