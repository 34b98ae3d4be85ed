// The faceid page: plain JavaScript over the /v1 API; nothing is fetched from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const keyInput = $("api-key");
keyInput.value = localStorage.getItem("faceid-key") || "";
keyInput.addEventListener("change", () => {
  localStorage.setItem("faceid-key", keyInput.value.trim());
  refreshPeople();
  refreshHealth();
});

// One call to the API: JSON back, or an Error carrying the service's own message.
async function api(method, path, body) {
  const headers = {};
  const key = keyInput.value.trim();
  if (key) headers["X-API-Key"] = key;
  if (body && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body });
  let data = null;
  try { data = await response.json(); } catch (e) { /* not JSON */ }
  if (!response.ok) {
    const message = data && data.error ? data.error.message : `HTTP ${response.status}`;
    throw new Error(message);
  }
  return data;
}

function show(el, text, kind) {
  el.textContent = text;
  el.className = "status" + (kind ? " " + kind : "");
}

async function refreshHealth() {
  try {
    const h = await api("GET", "/v1/health");
    $("health").textContent = `model ${h.model_id} · ${h.people} people, ${h.faces} photos · auth: ${h.auth}`;
  } catch (e) {
    $("health").textContent = "service unreachable: " + e.message;
  }
}

// -- identify: boxes and names drawn on the photo ----------------------------------------
function loadImage(file) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser cannot show this file"));
    img.src = URL.createObjectURL(file);
  });
}

function drawFaces(img, faces) {
  const canvas = $("identify-canvas");
  const scale = Math.min(1, 640 / img.naturalWidth);
  canvas.width = Math.round(img.naturalWidth * scale);
  canvas.height = Math.round(img.naturalHeight * scale);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  ctx.lineWidth = 3;
  ctx.font = "bold 16px system-ui, sans-serif";
  for (const face of faces) {
    const [left, top, right, bottom] = face.box.map((v) => v * scale);
    const known = face.name !== "unknown";
    ctx.strokeStyle = known ? "#2ecc40" : "#ff4136";
    ctx.strokeRect(left, top, right - left, bottom - top);
    const label = face.name;
    const width = ctx.measureText(label).width + 8;
    const y = Math.max(0, top - 22);
    ctx.fillStyle = ctx.strokeStyle;
    ctx.fillRect(left - 1.5, y, width, 22);
    ctx.fillStyle = "#fff";
    ctx.fillText(label, left + 3, y + 16);
  }
}

$("identify-btn").addEventListener("click", async () => {
  const file = $("identify-file").files[0];
  const status = $("identify-status");
  const list = $("identify-result");
  list.replaceChildren();
  if (!file) return show(status, "choose a photo first", "error");
  show(status, "identifying…");
  const form = new FormData();
  form.append("photo", file);
  form.append("all_faces", "true");
  form.append("top_k", "3");
  try {
    const [img, result] = await Promise.all([loadImage(file), api("POST", "/v1/identify", form)]);
    drawFaces(img, result.faces);
    for (const face of result.faces) {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.className = "face-name " + (face.name === "unknown" ? "unknown" : "known");
      name.textContent = face.name;
      const d = face.distance === null ? "-" : face.distance.toFixed(3);
      const nearest = face.matches.map((m) => `${m.name} ${m.distance.toFixed(3)}`).join(", ");
      const bound = face.rule && face.rule.score === "ratio"
        ? `ratio to the next person ${face.ratio === null ? "-" : face.ratio.toFixed(3)}, bound ${face.threshold.toFixed(3)}`
        : `threshold ${face.threshold.toFixed(3)}`;
      li.append(name, ` — distance ${d} (${bound}); nearest: ${nearest}`);
      list.append(li);
    }
    show(status, `${result.faces.length} face(s) in ${result.timings_ms.work} ms`, "ok");
  } catch (e) {
    show(status, e.message, "error");
  }
});

// -- enroll: uploads, or a webcam frame where the browser allows ---------------------------
async function enroll(blobs) {
  const status = $("enroll-status");
  const name = $("enroll-name").value;
  if (!name.trim()) return show(status, "type the person's name first", "error");
  if (!blobs.length) return show(status, "choose one or more photos first", "error");
  const form = new FormData();
  form.append("name", name);
  for (const [blob, filename] of blobs) form.append("photo", blob, filename);
  show(status, "enrolling…");
  try {
    const r = await api("POST", "/v1/enroll", form);
    const failed = r.failed.map((f) => f.error.message).join("; ");
    show(status, `enrolled ${r.enrolled.length} photo(s) of ${name.trim()}` +
      (failed ? `; skipped: ${failed}` : ""), failed ? "error" : "ok");
    refreshPeople();
    refreshHealth();
  } catch (e) {
    show(status, e.message, "error");
  }
}

$("enroll-btn").addEventListener("click", () =>
  enroll([...$("enroll-files").files].map((f) => [f, f.name])));

let stream = null;
if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) $("webcam-btn").hidden = false;
$("webcam-btn").addEventListener("click", async () => {
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true });
    $("webcam-video").srcObject = stream;
    $("webcam").hidden = false;
  } catch (e) {
    show($("enroll-status"), "the webcam is not available: " + e.message, "error");
  }
});
$("webcam-stop").addEventListener("click", () => {
  if (stream) stream.getTracks().forEach((t) => t.stop());
  $("webcam").hidden = true;
});
$("webcam-capture").addEventListener("click", () => {
  const video = $("webcam-video");
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  canvas.toBlob((blob) => enroll([[blob, "webcam.jpg"]]), "image/jpeg", 0.92);
});

// -- verify: two photos side by side -------------------------------------------------------
for (const side of ["a", "b"]) {
  $(`verify-${side}`).addEventListener("change", (ev) => {
    const file = ev.target.files[0];
    if (file) $(`verify-${side}-img`).src = URL.createObjectURL(file);
  });
}
$("verify-btn").addEventListener("click", async () => {
  const a = $("verify-a").files[0];
  const b = $("verify-b").files[0];
  const out = $("verify-result");
  if (!a || !b) return show(out, "choose two photos", "error");
  const form = new FormData();
  form.append("photo_a", a);
  form.append("photo_b", b);
  show(out, "comparing…");
  try {
    const v = await api("POST", "/v1/verify", form);
    show(out, `${v.same ? "same person" : "different people"}: distance ${v.distance.toFixed(4)}` +
      ` (threshold ${v.threshold.toFixed(4)})`, v.same ? "ok" : "");
  } catch (e) {
    show(out, e.message, "error");
  }
});

// -- people: list, rename, remove ----------------------------------------------------------
async function refreshPeople() {
  const status = $("people-status");
  const body = $("people-table").tBodies[0];
  try {
    const r = await api("GET", "/v1/people");
    body.replaceChildren();
    for (const [name, count] of Object.entries(r.people)) {
      const tr = document.createElement("tr");
      tr.dataset.name = name;
      const cell = (content) => { const td = document.createElement("td"); td.append(content); return td; };
      const input = document.createElement("input");
      input.type = "text";
      input.value = name;
      input.className = "rename-input";
      const rename = document.createElement("button");
      rename.textContent = "Rename";
      rename.className = "small rename-btn";
      rename.addEventListener("click", () => change("PATCH", name, { name: input.value }));
      const remove = document.createElement("button");
      remove.textContent = "Remove";
      remove.className = "small remove-btn";
      remove.addEventListener("click", () => {
        if (confirm(`Remove ${name} and all their photos?`)) change("DELETE", name);
      });
      const actions = document.createElement("td");
      actions.append(input, rename, remove);
      tr.append(cell(name), cell(String(count)), actions);
      body.append(tr);
    }
    show(status, r.count ? "" : "nobody is enrolled yet");
  } catch (e) {
    show(status, e.message, "error");
  }
}

async function change(method, name, body) {
  const status = $("people-status");
  try {
    await api(method, "/v1/people/" + encodeURIComponent(name), body);
    await refreshPeople();
    show(status, method === "DELETE" ? `removed ${name}` : `renamed ${name} to ${body.name.trim()}`, "ok");
    refreshHealth();
  } catch (e) {
    show(status, e.message, "error");
  }
}

$("people-refresh").addEventListener("click", refreshPeople);
refreshHealth();
refreshPeople();
